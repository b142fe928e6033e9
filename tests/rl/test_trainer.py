"""The PPO training loop (rl/trainer.py): metrics, checkpoints, resume, vLLM weight sync, the outcome-only ablation.

Runs train() on the tiny random Llama of tests/conftest.py (``tiny_model_dir``).
"""

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from r2_write.rl.trainer import train
from r2_write.training.checkpoints import latest_checkpoint
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

