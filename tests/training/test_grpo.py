"""GRPO baseline module: TRL GRPOTrainer with a sequence-level reward, checkpointing and resume."""

import json
import shutil

import pytest
from pydantic import ValidationError

from r2_write.training.grpo import GRPOParams, train_grpo

PROMPTS = ["Write a haiku.", "Write a memo."]
TRUNCATED: list[bool] = []


def length_reward(prompts, completions, rubrics=None, **kwargs):
    assert rubrics == ["r"] * len(completions)  # the dataset column reaches the reward
    assert len(kwargs["truncated"]) == len(completions)  # which completions hit max_completion_length
    TRUNCATED.extend(kwargs["truncated"])
    return [len(c[0]["content"]) / 100 for c in completions]


def _cfg(out, **kw) -> GRPOParams:
    return GRPOParams(**{"max_steps": 2, "per_device_train_batch_size": 2, "num_generations": 2, "max_completion_length": 8,
                         "learning_rate": 1e-3, "save_steps": 1, "save_total_limit": 2, "cleanup_checkpoints": False, "output_dir": str(out), **kw})


def test_params_validate_group_size():
    with pytest.raises(ValidationError, match="num_generations"):
        GRPOParams(num_generations=1)


def test_trains_checkpoints_and_resumes_after_a_kill(tiny_model_dir, tmp_path):
    final, history = train_grpo(tiny_model_dir, PROMPTS, ["r", "r"], length_reward, _cfg(tmp_path))
    assert any(TRUNCATED)  # a random tiny model rarely stops within 8 tokens
    assert (tmp_path / "final" / "config.json").exists()
    assert len(history) == 2 and all("reward" in h for h in history)

    # a kill after step 1, then the same command again
    shutil.rmtree(tmp_path / "trainer" / "checkpoint-2")
    state_file = tmp_path / "trainer" / "checkpoint-1" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["log_history"][0]["reward"] = 123.0
    state_file.write_text(json.dumps(state))
    _, resumed = train_grpo(tiny_model_dir, PROMPTS, ["r", "r"], length_reward, _cfg(tmp_path))
    assert len(resumed) == 2 and resumed[0]["reward"] == 123.0  # step 1 came from the checkpoint


def test_checkpoints_are_deleted_once_training_finished(tiny_model_dir, tmp_path):
    train_grpo(tiny_model_dir, PROMPTS, ["r", "r"], length_reward, _cfg(tmp_path, max_steps=1, cleanup_checkpoints=True))
    assert (tmp_path / "final" / "config.json").exists() and not list((tmp_path / "trainer").glob("checkpoint-*"))
