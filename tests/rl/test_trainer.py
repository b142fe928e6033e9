"""The PPO training loop (rl/trainer.py): metrics, checkpoints, resume, vLLM weight sync, the outcome-only ablation.

Runs train() on the tiny random Llama of tests/conftest.py (``tiny_model_dir``).
"""

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from r2_write.rl.trainer import train
from r2_write.runs import latest_checkpoint
from tests.rl.stand_ins import PROMPTS, fake_reward_fn, small_cfg, stepped_reward_fn

torch.set_num_threads(1)


METRICS = {"reward/mean", "reward/outcome", "reward/process", "reward/format_violations", "reward/redundant_frac",
           "response/length_tokens", "response/reflections",
           "objective/kl", "losses/entropy", "losses/value_loss", "losses/clipfrac", "losses/policy_loss",
           "losses/approx_kl"}


def test_train_two_steps_writes_loadable_final_and_checkpoints(tiny_model_dir, tmp_path):
    cfg = small_cfg(total_steps=2, save_every=1, keep_checkpoints=0, cleanup_checkpoints=False, output_dir=str(tmp_path / "ppo"))
    logged = []
    out = train(tiny_model_dir, PROMPTS, fake_reward_fn, cfg, rubrics=["r"] * 4,
                log_fn=lambda metrics, step: logged.append((step, metrics)))

    assert [step for step, _ in logged] == [1, 2] and len(out["history"]) == 2
    assert METRICS <= set(out["history"][0])
    no_steps = {"reward/steps_improved_frac", "reward/redundant_frac", "reward/steps_worsened_frac"}  # NaN: 0 steps
    assert all(math.isfinite(v) for k, v in out["history"][0].items() if k not in no_steps)
    assert all(math.isnan(out["history"][0][k]) for k in no_steps)
    final = AutoModelForCausalLM.from_pretrained(out["final_dir"])
    assert final.config.hidden_size == 32
    assert latest_checkpoint(cfg.output_dir).name == "checkpoint-2"
    state = json.loads((tmp_path / "ppo" / "checkpoint-1" / "trainer_state.json").read_text())
    assert state["step"] == 1 and len(state["history"]) == 1


def test_train_keeps_only_the_newest_checkpoints(tiny_model_dir, tmp_path):
    cfg = small_cfg(total_steps=3, save_every=1, keep_checkpoints=2, cleanup_checkpoints=False, output_dir=str(tmp_path / "ppo"))
    train(tiny_model_dir, PROMPTS, fake_reward_fn, cfg)
    assert sorted(p.name for p in (tmp_path / "ppo").iterdir()) == ["checkpoint-2", "checkpoint-3", "final"]


def test_train_resumes_from_the_latest_checkpoint_at_the_next_step(tiny_model_dir, tmp_path):
    def cfg(steps, name):
        return small_cfg(total_steps=steps, save_every=1, ppo_epochs=2, learning_rate=1e-3, cleanup_checkpoints=False,
                         output_dir=str(tmp_path / name))

    full = train(tiny_model_dir, PROMPTS, fake_reward_fn, cfg(2, "full"))
    train(tiny_model_dir, PROMPTS, fake_reward_fn, cfg(1, "resumed"))
    logged = []
    resumed = train(tiny_model_dir, PROMPTS, fake_reward_fn, cfg(2, "resumed"), log_fn=lambda m, step: logged.append(step))

    assert logged == [2]  # step 1 came from checkpoint-1
    assert len(resumed["history"]) == 2
    assert resumed["history"][0]["losses/value_loss"] == full["history"][0]["losses/value_loss"]
    # step 2 depends on the step-1 weights (kl to the reference), value head and optimizer state
    assert abs(full["history"][1]["objective/kl"]) > 1e-4
    for key in ("reward/mean", "objective/kl", "losses/policy_loss", "losses/value_loss", "losses/approx_kl"):
        assert resumed["history"][1][key] == pytest.approx(full["history"][1][key], rel=1e-4, abs=1e-7)


# ----------------------------------------------------------------------------- vLLM rollouts


def test_train_with_vllm_syncs_weights_after_every_update(tiny_model_dir, tmp_path, monkeypatch):
    from r2_write.rl import trainer

    monkeypatch.setattr(trainer, "VLLMSampler", lambda lm, accelerator, tokenizer, cfg: _FakeSampler())
    cfg = small_cfg(total_steps=2, save_every=0, use_vllm=True, output_dir=str(tmp_path / "ppo"))
    out = train(tiny_model_dir, PROMPTS, fake_reward_fn, cfg)
    assert _FakeSampler.log == ["sample", "sync", "sample", "sync"]
    assert len(out["history"]) == 2


class _FakeSampler:
    log: list = []

    def __init__(self):
        _FakeSampler.log = []

    def __call__(self, queries, query_mask):
        _FakeSampler.log.append("sample")
        return [[5, 6, 2]] * len(queries)

    def sync_weights(self):
        _FakeSampler.log.append("sync")


# ----------------------------------------------------------------------------- the outcome-only ablation


def test_outcome_only_ablation_rewards_the_outcome_alone(tiny_model_dir, tmp_path):
    """lambda = 0: at every logged step reward/mean is the outcome, and the RLHF reward adds only the KL term."""
    with_process = train(tiny_model_dir, PROMPTS, stepped_reward_fn, small_cfg(total_steps=2, save_every=0, process_weight=0.5,
                                                                          output_dir=str(tmp_path / "ppo")))
    logged = []
    ablation = train(tiny_model_dir, PROMPTS, stepped_reward_fn, small_cfg(total_steps=2, save_every=0, process_weight=0.0,
                                                                      output_dir=str(tmp_path / "outcome")),
                     log_fn=lambda metrics, step: logged.append((step, metrics)))
    assert [step for step, _ in logged] == [1, 2] and [m for _, m in logged] == ablation["history"]
    for row in ablation["history"]:
        assert row["reward/mean"] == pytest.approx(row["reward/outcome"], abs=1e-6)
        assert row["objective/rlhf_reward"] == pytest.approx(row["reward/mean"] + row["objective/non_score_reward"], abs=1e-6)
        assert row["objective/rlhf_reward"] == pytest.approx(row["reward/outcome"] - small_cfg().kl_coef * row["objective/kl"], abs=1e-6)
    first = with_process["history"][0]  # same seed, same first rollout: lambda x process on top of the outcome
    assert first["reward/mean"] == pytest.approx(ablation["history"][0]["reward/mean"] + 0.5 * 0.2, abs=1e-5)



def _scheduled_judge(fail: set[tuple[int, int]], max_failed_share: float):
    """A generate-mode rubric judge whose n-th judged text (step n // 2, row n % 2) gets no valid score when listed in ``fail``."""
    from r2_write.judge.judge import JudgeConfig, RubricJudge
    from r2_write.judge.reward import judge_score_fn
    from r2_write.rubrics.schema import BANDS
    from tests.fakes import FakeBackend, make_client

    seen = []

    def respond(conv, sampling):
        n = len(seen)
        seen.append(n)
        return "no score here" if (n // 2, n % 2) in fail else '{"score": 6, "reason": "x"}'

    client = make_client(FakeBackend(respond=respond))
    client.cfg = client.cfg.model_copy(update={"max_failed_share": max_failed_share})
    generic = [{"name": "Quality", "criteria_description": "Good?", **{b: "x" for b in BANDS}}]
    return judge_score_fn(RubricJudge(client, JudgeConfig(mode="generate", max_attempts=1)), generic)


def test_unscored_texts_are_logged_per_step_and_the_failure_budget_stops_the_run_within_one_step(tiny_model_dir, tmp_path):
    from r2_write.llm.base import FailureBudgetError

    # texts per step: 2 judged; failed so far after steps 1..4: 0/2, 1/4, 3/6 (= 0.5, within), 5/8 (> 0.5: stop)
    score_fn = _scheduled_judge({(1, 0), (2, 0), (2, 1), (3, 0), (3, 1)}, max_failed_share=0.5)

    def reward_fn(prompts, completions, rubrics=None, **kwargs):
        scores = score_fn(prompts, completions, [None] * len(completions))
        return [{**fake_reward_fn([p], [c])[0], "outcome": s} for p, c, s in zip(prompts, completions, scores)]

    logged = []
    cfg = small_cfg(total_steps=5, save_every=0, output_dir=str(tmp_path / "ppo"))
    with pytest.raises(FailureBudgetError) as err:
        train(tiny_model_dir, PROMPTS, reward_fn, cfg, log_fn=lambda m, step: logged.append((step, m)),
              judge_audit=score_fn)
    assert [step for step, _ in logged] == [1, 2, 3]  # step 4 crossed the budget and stopped before its update
    assert [m["reward/unscored"] for _, m in logged] == [0.0, 1.0, 2.0]
    assert "\n" not in str(err.value) and "5 of 8" in str(err.value)
    assert not (tmp_path / "ppo" / "final").exists()


def test_without_a_judge_audit_no_unscored_metric_is_invented(tiny_model_dir, tmp_path):
    out = train(tiny_model_dir, PROMPTS, fake_reward_fn, small_cfg(total_steps=1, save_every=0,
                                                                   output_dir=str(tmp_path / "ppo")))
    assert "reward/unscored" not in out["history"][0]


def test_monitor_needs_its_judges_and_leaves_training_prompts(tiny_model_dir, tmp_path):
    cfg = small_cfg(total_steps=1, save_every=0, output_dir=str(tmp_path / "ppo"), monitor={"every": 1, "prompts": 4})
    with pytest.raises(ValueError, match="monitor"):
        train(tiny_model_dir, PROMPTS, fake_reward_fn, cfg)
    from r2_write.rl.monitor import MonitorJudges

    judges = MonitorJudges(reward=lambda p, t, r: [5.0] * len(t), eval=lambda p, t, r: [5.0] * len(t))
    with pytest.raises(ValueError, match="ppo.monitor.prompts=4 .* none of the 4 RL prompts"):
        train(tiny_model_dir, PROMPTS, fake_reward_fn, cfg, monitor_judges=judges)
