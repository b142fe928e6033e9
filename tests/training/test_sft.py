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


# ----------------------------------------------------------------------------- long examples (issue 24)


def test_example_lengths_are_the_lengths_trl_trains_on(tiny_model_dir, tmp_path):
    """example_lengths counts what SFTTrainer's own tokenization yields (chat template over prompt + completion)."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from r2_write.training.sft import example_lengths

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    completions = [c * (i + 1) for i, c in enumerate(COMPLETIONS)]
    args = SFTConfig(output_dir=str(tmp_path), max_length=None, report_to="none", completion_only_loss=True, bf16=False)
    trainer = SFTTrainer(model=tiny_model_dir, args=args, processing_class=tokenizer,
                         train_dataset=Dataset.from_list(to_chat_examples(PROMPTS, completions)))
    trained = [len(ids) for ids in trainer.train_dataset["input_ids"]]
    assert example_lengths(tokenizer, PROMPTS, completions) == trained and len(set(trained)) == 4


def test_overlong_examples_are_dropped_up_to_the_stated_share_then_fail(tiny_model_dir):
    from transformers import AutoTokenizer

    from r2_write.config import ConfigError
    from r2_write.training.sft import example_lengths, overlong_examples

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    completions = [c * (i + 1) for i, c in enumerate(COMPLETIONS)]
    lengths = example_lengths(tokenizer, PROMPTS, completions)
    limit = lengths[2]  # example 2 fits exactly, example 3 is longer
    assert overlong_examples(tokenizer, PROMPTS, completions, SFTParams(max_length=limit, max_overlong_fraction=0.25)) == [3]
    assert overlong_examples(tokenizer, PROMPTS, completions, SFTParams(max_length=lengths[3])) == []
    with pytest.raises(ConfigError, match=r"sft.max_length=\d+: 2 of 4 SFT examples are longer"):
        overlong_examples(tokenizer, PROMPTS, completions, SFTParams(max_length=lengths[1], max_overlong_fraction=0.25))


def test_sft_node_drops_overlong_examples_and_logs_them(tiny_model_dir, monkeypatch, caplog):
    import pandas as pd
    from transformers import AutoTokenizer

    import logging

    import r2_write.pipelines.sft.nodes as nodes
    from r2_write.training.sft import example_lengths

    # a logging.config.dictConfig run earlier in this process (Kedro's, a library's) may have disabled the logger
    node_log = logging.getLogger(nodes.__name__)
    monkeypatch.setattr(node_log, "disabled", False)
    monkeypatch.setattr(node_log, "propagate", True)
    caplog.set_level(logging.WARNING, logger=nodes.__name__)
    completions = [c * (i + 1) for i, c in enumerate(COMPLETIONS)]
    lengths = example_lengths(AutoTokenizer.from_pretrained(tiny_model_dir), PROMPTS, completions)
    trained = {}

    def fake_stage(stage):
        trained["data"] = stage.parts["data"]
        raise RuntimeError("stop before training")

    monkeypatch.setattr(nodes, "train_stage", fake_stage)
    sft_set = pd.DataFrame({"prompt": PROMPTS, "completion": completions})
    with pytest.raises(RuntimeError, match="stop before training"):
        nodes.train_sft_model(sft_set, tiny_model_dir, {"max_length": lengths[2], "max_overlong_fraction": 0.25})
    assert trained["data"] == (PROMPTS[:3], completions[:3])
    assert "1 of 4 examples are longer than sft.max_length" in caplog.text


def test_padding_free_batches_give_the_padded_loss(tiny_model_dir, tmp_path):
    """padding_free (conf/paper) on CPU: the first step's loss equals the padded batch's (no attention across examples)."""
    completions = [c * (i + 1) for i, c in enumerate(COMPLETIONS)]  # uneven lengths: padding matters
    losses = {}
    for padding_free in (False, True):
        cfg = SFTParams(max_steps=1, per_device_train_batch_size=4, max_length=512, learning_rate=1e-3,
                        padding_free=padding_free, output_dir=str(tmp_path / str(padding_free)))
        _, history = train_sft(tiny_model_dir, PROMPTS, completions, cfg)
        losses[padding_free] = history[0]["loss"]
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)


def test_lm_head_chunk_size_tiles_trls_fused_loss_during_training_only(tiny_model_dir, tmp_path, monkeypatch):
    import trl.trainer.utils as trl_utils

    seen = []
    apply = trl_utils._ChunkedLogProbFunction.apply
    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply",
                        lambda *args: seen.append(args[5]) or apply(*args))
    default = trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE
    cfg = SFTParams(max_steps=1, per_device_train_batch_size=2, max_length=64, lm_head_chunk_size=8,
                    output_dir=str(tmp_path))
    _, history = train_sft(tiny_model_dir, PROMPTS[:2], COMPLETIONS[:2], cfg)
    assert seen and set(seen) == {8} and history
    assert trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE == default == 32768  # put back after training
