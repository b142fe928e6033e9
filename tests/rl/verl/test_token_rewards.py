"""The per-token tensor that reaches veRL's advantage computation equals the own loop's token rewards.

The same tokenized trajectories go through both engines' code:

* own loop: ``response_mask`` -> ``decode_with_offsets`` -> ``process_reward_fn`` -> ``ppo.token_scores``
  (what ``rl/trainer.py`` feeds to ``compute_rewards`` and GAE);
* veRL 0.9.1: its ``RewardLoopWorker`` (loading our ``ProcessRewardManager`` by importlib from the
  generated overrides) -> its ``RewardLoopManager.compute_rm_score`` (the non-streaming path, Ray
  calls made local) -> ``batch.union`` -> its ``extract_reward``: the tensor ``fit`` stores as
  ``token_level_scores`` before the in-reward KL and GAE.

The difference must be exactly 0, and the trajectories have rewards before the last token, so
veRL's default (one scalar on the last valid token) fails the comparison.
"""

from __future__ import annotations

import inspect
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from r2_write.rewards.process import ProcessRewardConfig
from r2_write.rl.ppo import token_scores
from r2_write.rl.ppo_config import PPOConfig
from r2_write.rl.rollout import decode_with_offsets, response_mask
from r2_write.rl.verl.overrides import hydra_args, verl_overrides
from r2_write.rewards.spec import build_reward
from tests.rl.verl.conftest import compose, local_reward_loop_manager

PROMPTS = ["Plan a lesson on tides.", "Write an ad.", "Write a memo.", "Describe rain."]
TEXTS = [
    "<think>\n<draft>\nTides rise.\n</draft>\n<reflection>\nToo short.\n</reflection>\n<revision>\nTides rise and fall "
    "twice a day.\n</revision>\n<reflection>\nAdd why.\n</reflection>\n<revision>\nTides rise and fall twice a day, "
    "pulled by the moon.\n</revision>\n</think>\nTides rise and fall twice a day, pulled by the moon.",
    "<think>\n<draft>\nBuy it.\n</draft>\n<reflection>\nVague.\n</reflection>\n<revision>\nBuy it now.\n</revision>\n"
    "</think>\nBuy it now, today.",
    "<think>\nno segments here</think>\nA memo.",  # malformed: the format penalty, never judged
    "<think>\n<draft>\n" + "Rain falls on the roofs. " * 30,  # cut off at max_new_tokens: truncated (no EOS)
]
REWARD_CFG = ProcessRewardConfig()
PROCESS_WEIGHT = 0.5


@pytest.fixture(scope="module")
def batch(tokenizer):
    """Left-padded prompts and right-padded responses, as both engines hold them."""
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True) for p in PROMPTS]
    prompts = [p if isinstance(p, list) else p["input_ids"] for p in prompts]
    responses = [tokenizer(t, add_special_tokens=False)["input_ids"] + ([eos] if i < 3 else []) for i, t in enumerate(TEXTS)]
    pw, rw = max(map(len, prompts)), max(map(len, responses))
    assert len(responses[3]) == rw  # a truncated row fills the width (max_new_tokens), as in a rollout
    return {
        "eos": [eos],
        "prompts": torch.tensor([[pad] * (pw - len(p)) + p for p in prompts]),
        "prompt_mask": torch.tensor([[0] * (pw - len(p)) + [1] * len(p) for p in prompts]),
        "responses": torch.tensor([r + [pad] * (rw - len(r)) for r in responses]),
        "lengths": [len(r) for r in responses],
    }


def own_token_scores(tokenizer, batch, reward_fn) -> torch.Tensor:
    """The own loop's steps from sampled tokens to the per-token scores (rl/rollout.py, rl/trainer.py, rl/ppo.py)."""
    responses = batch["responses"]
    mask = response_mask(responses, batch["eos"])
    truncated = ~torch.isin(responses, torch.tensor(batch["eos"])).any(1)
    decoded = [decode_with_offsets(tokenizer, row[: int(n)].tolist()) for row, n in zip(responses, mask.sum(1))]
    results = reward_fn(PROMPTS, [t for t, _ in decoded], rubrics=[None] * len(PROMPTS), truncated=truncated.tolist())
    rollout = SimpleNamespace(logprobs=torch.zeros(responses.shape), token_offsets=[o for _, o in decoded])
    return token_scores(rollout, results, REWARD_CFG, PROCESS_WEIGHT)


def verl_config(tiny_model_dir, tmp_path, fake_judge_path, monkeypatch):
    cfg = PPOConfig(engine="verl", critic="separate", batch_size=4, mini_batch_size=4, max_new_tokens=256,
                    max_prompt_length=64, process_weight=PROCESS_WEIGHT, total_steps=1)
    overrides = verl_overrides(cfg, policy_dir=tiny_model_dir, train_file=str(tmp_path / "train.parquet"),
                               checkpoint_dir=str(tmp_path / "ckpt"), n_prompts=4)
    overrides["reward.num_workers"] = 1
    spec = {"reward": {"function": fake_judge_path, "kwargs": {}}, "reward_config": REWARD_CFG.model_dump(),
            "process_weight": PROCESS_WEIGHT, "eos_ids": [int(i) for i in verl_eos(tiny_model_dir)]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    monkeypatch.setenv("R2_VERL_SPEC", str(tmp_path / "spec.json"))
    return compose(hydra_args(overrides))


def verl_eos(model_dir):
    from r2_write.rl.verl.launch import eos_ids

    return eos_ids(model_dir)


def verl_batch(batch):
    """The batch as veRL's trainer holds it after the rollout (``batch.union(gen_batch_output)``)."""
    from verl import DataProto

    responses = batch["responses"]
    valid = torch.tensor([[1] * n + [0] * (responses.shape[1] - n) for n in batch["lengths"]])
    attention_mask = torch.cat([batch["prompt_mask"], valid], 1)
    extra = np.empty(len(PROMPTS), dtype=object)
    extra[:] = [{"index": i, "prompt_text": p, "criteria": json.dumps(None)} for i, p in enumerate(PROMPTS)]
    return DataProto.from_dict(
        tensors={"prompts": batch["prompts"], "responses": responses, "attention_mask": attention_mask,
                 "input_ids": torch.cat([batch["prompts"], responses], 1), "response_mask": valid},
        non_tensors={"extra_info": extra, "data_source": np.array(["r2_write"] * len(PROMPTS), dtype=object)},
    )


def verl_token_level_scores(config, data, monkeypatch) -> torch.Tensor:
    """veRL's own reward code from the batch to ``token_level_scores``; its Ray calls run in this process."""
    from verl.trainer.ppo.reward import extract_reward

    rm_output = local_reward_loop_manager(config, monkeypatch).compute_rm_score(data)
    reward_tensor, extra = extract_reward(data.union(rm_output))
    return reward_tensor, extra


def test_veRL_token_level_scores_equal_the_own_loops_token_rewards(tokenizer, tiny_model_dir, batch, tmp_path,
                                                                   fake_judge_path, monkeypatch):
    config = verl_config(tiny_model_dir, tmp_path, fake_judge_path, monkeypatch)
    reward_fn, _ = build_reward({"function": fake_judge_path, "kwargs": {}}, REWARD_CFG)
    own = own_token_scores(tokenizer, batch, reward_fn)
    verl, extra = verl_token_level_scores(config, verl_batch(batch), monkeypatch)
    assert verl.shape == own.shape and verl.dtype == own.dtype == torch.float32
    assert (verl - own).abs().max().item() == 0.0
    # what makes it a process reward: rewards before the last valid token, several per row
    last = torch.tensor(batch["lengths"]) - 1
    before_last = own.clone()
    before_last[torch.arange(len(PROMPTS)), last] = 0
    assert (before_last[:2] != 0).sum(1).min() >= 2
    assert own[2, last[2]] == -REWARD_CFG.format_penalty and own[3, last[3]] == -REWARD_CFG.format_penalty
    # the per-sample numbers reach veRL's batch (and from there its metrics)
    assert list(extra["format_violation"]) == [0.0, 0.0, 1.0, 1.0] and extra["n_steps"][0] == 2.0


def test_a_last_token_scalar_fails_the_comparison(tokenizer, tiny_model_dir, batch, fake_judge_path):
    """veRL's default placement (its base assemble_rm_scores: one score on the last valid token) is not ours."""
    from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase

    reward_fn, _ = build_reward({"function": fake_judge_path, "kwargs": {}}, REWARD_CFG)
    own = own_token_scores(tokenizer, batch, reward_fn)
    data = verl_batch(batch)
    scalar = RewardManagerBase.assemble_rm_scores(data, own.sum(1).tolist())
    assert (scalar - own).abs().max().item() > 0.1
    torch.testing.assert_close(scalar.sum(1), own.sum(1))  # same total: only the placement differs


def test_the_streaming_scalar_path_is_refused(batch):
    """A scalar score (what veRL's agent loop would write on the last token) cannot become our reward tensor."""
    from r2_write.rl.verl.reward_manager import ProcessRewardManager

    with pytest.raises(TypeError, match="scalar reward would put one number on the last token"):
        ProcessRewardManager.assemble_rm_scores(verl_batch(batch), [1.0, 0.5, -1.0, -1.0])


def test_the_trainer_takes_veRLs_non_streaming_reward_path(monkeypatch):
    """ProcessRewardTrainer sets use_rm, and veRL 0.9.1 then computes rewards by compute_rm_score, not in the agent loop."""
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer

    from r2_write.rl.verl.main import ProcessRewardTrainer

    monkeypatch.setattr(RayPPOTrainer, "__init__", lambda self, *a, **k: setattr(self, "use_rm", False))
    assert ProcessRewardTrainer().use_rm is True
    # the veRL code this relies on (a newer veRL that moves it fails here, not on a GPU)
    init_workers, fit = inspect.getsource(RayPPOTrainer.init_workers), inspect.getsource(RayPPOTrainer.fit)
    assert "enable_agent_reward_loop = not self.use_rm or" in init_workers
    assert "reward_loop_worker_handles = self.reward_loop_manager.reward_loop_workers if enable_agent_reward_loop else None" in init_workers
    assert 'if self.use_rm and "rm_scores" not in batch.batch.keys():' in fit
    assert 'batch.batch["token_level_scores"] = reward_tensor' in fit


def test_veRLs_kl_penalty_and_gae_on_those_scores_match_the_own_loop(tokenizer, tiny_model_dir, batch, tmp_path,
                                                                     fake_judge_path, monkeypatch):
    """One step further: veRL's apply_kl_penalty and compute_advantage (what fit runs next, with the generated config)
    against the own compute_rewards, compute_gae and whitening, on the same scores, log-probs and values."""
    from verl.trainer.ppo import core_algos
    from verl.trainer.ppo.ray_trainer import apply_kl_penalty, compute_advantage

    from r2_write.rl.ppo import compute_gae, compute_rewards
    from r2_write.rl.utils import masked_whiten

    config = verl_config(tiny_model_dir, tmp_path, fake_judge_path, monkeypatch)
    data = verl_batch(batch)
    scores, _ = verl_token_level_scores(config, data, monkeypatch)
    gen = torch.Generator().manual_seed(0)
    shape = scores.shape
    logp, ref_logp = -torch.rand(shape, generator=gen) * 3, -torch.rand(shape, generator=gen) * 3
    values = torch.randn(shape, generator=gen)
    mask = data.batch["response_mask"].float()
    data.batch["token_level_scores"] = scores
    data.batch["old_log_probs"], data.batch["ref_log_prob"], data.batch["values"] = logp, ref_logp, values
    data, _ = apply_kl_penalty(data, kl_ctrl=core_algos.get_kl_controller(config.algorithm.kl_ctrl),
                               kl_penalty=config.algorithm.kl_penalty)
    data = compute_advantage(data, adv_estimator=config.algorithm.adv_estimator, gamma=config.algorithm.gamma,
                             lam=config.algorithm.lam, config=config.algorithm)

    own_rewards, _ = compute_rewards(scores, logp * mask, ref_logp * mask, mask, kl_coef=config.algorithm.kl_ctrl.kl_coef)
    assert torch.equal(data.batch["token_level_rewards"] * mask, own_rewards)
    own_adv, own_returns = compute_gae(own_rewards, values, mask, gamma=config.algorithm.gamma, lam=config.algorithm.lam)
    m = mask.bool()
    torch.testing.assert_close(data.batch["returns"][m], own_returns[m], atol=2e-5, rtol=2e-5)
    torch.testing.assert_close(data.batch["advantages"][m], masked_whiten(own_adv, mask)[m], atol=2e-5, rtol=2e-5)
