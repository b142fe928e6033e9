"""SFT module: chat rows, validation, and resume from an interval checkpoint (tiny random Llama)."""

import json
import shutil

import pytest
import torch
from pydantic import ValidationError
from transformers import AutoModelForCausalLM

from r2_write.training.sft import SFTParams, to_chat_examples, train_sft

PROMPTS = ["Write a haiku.", "Write a memo.", "Plan a lesson.", "Describe rain."]
COMPLETIONS = [f"<think>\n<plan>\nplan {i}\n</plan>\n</think>\nAnswer {i}." for i in range(4)]


def _cfg(out, **kw) -> SFTParams:
    return SFTParams(max_steps=2, per_device_train_batch_size=2, max_length=64, learning_rate=1e-3,
                     save_steps=1, save_total_limit=2, cleanup_checkpoints=False, output_dir=str(out), **kw)


def test_chat_rows_put_the_trajectory_in_the_assistant_turn():
    row = to_chat_examples(["Q"], ["<think>t</think>A"])[0]
    assert row == {"prompt": [{"role": "user", "content": "Q"}],
                   "completion": [{"role": "assistant", "content": "<think>t</think>A"}]}


def test_params_reject_unknown_and_out_of_range_fields():
    with pytest.raises(ValidationError, match="learning_rte"):
        SFTParams(learning_rte=1e-5)
    with pytest.raises(ValidationError, match="save_steps"):
        SFTParams(save_steps=-1)


def test_empty_set_is_a_clear_error(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="SFT set is empty"):
        train_sft(tiny_model_dir, [], [], _cfg(tmp_path))


def test_killed_run_resumes_from_the_last_checkpoint_and_matches_an_uninterrupted_one(tiny_model_dir, tmp_path):
    full_dir, full_history = train_sft(tiny_model_dir, PROMPTS, COMPLETIONS, _cfg(tmp_path / "full"))

    killed = tmp_path / "killed"
    train_sft(tiny_model_dir, PROMPTS, COMPLETIONS, _cfg(killed))
    # a kill after step 1: step 2's checkpoint and the final model were never written
    shutil.rmtree(killed / "trainer" / "checkpoint-2")
    shutil.rmtree(killed / "final")
    state_file = killed / "trainer" / "checkpoint-1" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["log_history"][0]["loss"] = 123.0  # marks history that can only come from the checkpoint
    state_file.write_text(json.dumps(state))

    resumed_dir, resumed_history = train_sft(tiny_model_dir, PROMPTS, COMPLETIONS, _cfg(killed))

    assert [h["loss"] for h in resumed_history] == [123.0, pytest.approx(full_history[1]["loss"], rel=1e-4)]
    a, b = AutoModelForCausalLM.from_pretrained(full_dir), AutoModelForCausalLM.from_pretrained(resumed_dir)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(x, y, atol=1e-6), name
