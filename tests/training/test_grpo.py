"""GRPO baseline module: TRL GRPOTrainer with a sequence-level reward, checkpointing and resume."""

import json
import shutil

import pytest
from pydantic import ValidationError

from r2_write.training.grpo import GRPOParams, train_grpo

PROMPTS = ["Write a haiku.", "Write a memo."]
TRUNCATED: list[bool] = []


TRAINED: list[str] = []


def length_reward(prompts, completions, rubrics=None, **kwargs):
    TRAINED.extend(p[-1]["content"] for p in prompts)
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


def _scheduled_judge(fail: set[int], max_failed_share: float):
    """A generate-mode rubric judge whose n-th judged text gets no valid score when n is in ``fail``."""
    from r2_write.judge.judge import JudgeConfig, RubricJudge
    from r2_write.judge.reward import judge_score_fn
    from r2_write.rubrics.schema import BANDS
    from tests.fakes import FakeBackend, make_client

    seen = []

    def respond(conv, sampling):
        seen.append(1)
        return "no score here" if len(seen) - 1 in fail else '{"score": 6, "reason": "x"}'

    client = make_client(FakeBackend(respond=respond))
    client.cfg = client.cfg.model_copy(update={"max_failed_share": max_failed_share})
    generic = [{"name": "Quality", "criteria_description": "Good?", **{b: "x" for b in BANDS}}]
    return judge_score_fn(RubricJudge(client, JudgeConfig(mode="generate", max_attempts=1)), generic)


def _judged_reward(score_fn):
    def reward(prompts, completions, rubrics=None, **kwargs):
        texts = [c[0]["content"] for c in completions]
        return [(s - 1) / 9 for s in score_fn(["q"] * len(texts), texts, [None] * len(texts))]
    return reward


def test_unscored_is_logged_per_step_and_the_budget_stops_within_one_step(tiny_model_dir, tmp_path):
    from r2_write.llm.base import FailureBudgetError

    # 2 completions judged per step: failed so far after steps 1..3: 1/2, 2/4 (0.5, within), 4/6 (> 0.5: stop)
    score_fn = _scheduled_judge({0, 3, 4, 5}, max_failed_share=0.5)
    out = tmp_path / "stop"
    with pytest.raises(FailureBudgetError) as err:
        train_grpo(tiny_model_dir, PROMPTS, [None, None], _judged_reward(score_fn),
                   _cfg(out, max_steps=5, save_steps=1, save_total_limit=5), judge_audit=score_fn)
    assert "\n" not in str(err.value) and "4 of 6" in str(err.value)
    logged = json.loads(sorted((out / "trainer").glob("checkpoint-*"))[-1].joinpath("trainer_state.json").read_text())
    steps = [h for h in logged["log_history"] if "reward" in h]
    assert [h["reward/unscored"] for h in steps] == [1.0, 1.0]  # step 3 stopped before its update and log

    ok = _scheduled_judge(set(), max_failed_share=0.5)
    _, history = train_grpo(tiny_model_dir, PROMPTS, [None, None], _judged_reward(ok),
                            _cfg(tmp_path / "ok", max_steps=1), judge_audit=ok)
    assert history[0]["reward/unscored"] == 0.0


def test_monitor_scores_held_out_prompts_every_n_steps(tiny_model_dir, tmp_path):
    from r2_write.rl.monitor import MonitorJudges, held_out_indices

    seen = []

    def reward_judge(prompts, texts, rubrics):
        seen.extend(prompts)
        return [7.0] * len(texts)

    judges = MonitorJudges(reward=reward_judge, eval=lambda p, t, r: [4.0] * len(t))
    TRAINED.clear()
    prompts = ["Write a haiku.", "Write a memo.", "Write a note.", "Write a toast."]
    cfg = _cfg(tmp_path, max_steps=2, monitor={"every": 2, "prompts": 2})
    with pytest.raises(ValueError, match="monitor"):
        train_grpo(tiny_model_dir, prompts, ["r"] * 4, length_reward, cfg)
    _, history = train_grpo(tiny_model_dir, prompts, ["r"] * 4, length_reward, cfg, monitor_judges=judges)
    assert "monitor/gap" not in history[0]
    assert history[1]["monitor/reward_score"] == 7.0 and history[1]["monitor/eval_score"] == 4.0
    assert history[1]["monitor/gap"] == 3.0
    held = [prompts[i] for i in held_out_indices(4, 2)]
    assert sorted(set(seen)) == sorted(held) and len(seen) == 2  # the held-out set, once (step 2)
    assert set(TRAINED) and not set(TRAINED) & set(held)  # never trained on
