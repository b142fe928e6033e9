"""The PPO algorithm (rl/ppo.py) against hand-computed values, then real updates.

Fast tests use the tiny random Llama of tests/conftest.py (``tiny_model_dir``, hidden 32, 2
layers) with the embedded model's tokenizer; one test runs a real update on the embedded
SmolLM2-135M (batch 2, 8 tokens).
"""

import copy

import pytest
import torch

from r2_write.rl.model import PolicyWithValue, load_causal_lm, response_logits_and_values
from r2_write.rl.ppo import compute_gae, compute_rewards, ppo_loss, ppo_update, train_minibatch
from r2_write.rl.ppo_config import PPOConfig
from r2_write.rl.rollout import rollout
from r2_write.rl.utils import logprobs_from_logits, masked_mean, masked_whiten
from tests.rl.stand_ins import PROMPTS, small_cfg

MODEL_DIR = "data/06_models/base_model"

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- GAE


def test_gae_hand_computed_gamma_1():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.6, 0.7]])
    adv, ret = compute_gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=0.95)
    # t=2: delta = 1 - 0.7 = 0.3                      A2 = 0.3
    # t=1: delta = 0 + 0.7 - 0.6 = 0.1                A1 = 0.1 + 0.95 * 0.3   = 0.385
    # t=0: delta = 0 + 0.6 - 0.5 = 0.1                A0 = 0.1 + 0.95 * 0.385 = 0.46575
    assert adv[0].tolist() == pytest.approx([0.46575, 0.385, 0.3])
    assert ret[0].tolist() == pytest.approx([0.96575, 0.985, 1.0])  # returns = advantages + values


def test_gae_hand_computed_with_padding():
    rewards = torch.tensor([[0.2, 1.0, 0.0]])
    values = torch.tensor([[0.4, 0.5, 9.0]])  # 9.0 sits on padding and must not leak
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    adv, ret = compute_gae(rewards, values, mask, gamma=0.9, lam=0.5)
    # t=1 (last real token, next is terminal): delta = 1.0 - 0.5 = 0.5                 A1 = 0.5
    # t=0: delta = 0.2 + 0.9 * 0.5 - 0.4 = 0.25;  A0 = 0.25 + 0.9 * 0.5 * 0.5 = 0.475
    assert adv[0].tolist() == pytest.approx([0.475, 0.5, 0.0])
    assert ret[0].tolist() == pytest.approx([0.875, 1.0, 0.0])


# ----------------------------------------------------------------------------- loss


def test_ppo_loss_with_unit_ratios_is_unclipped_minus_mean_advantage():
    torch.manual_seed(0)
    logp, adv, values = torch.randn(2, 5), torch.randn(2, 5), torch.randn(2, 5)
    mask = torch.tensor([[1.0] * 5, [1.0, 1.0, 1.0, 0.0, 0.0]])
    loss, stats = ppo_loss(logp, logp, adv, values, values, values, mask, PPOConfig())
    assert stats["losses/policy_loss"] == pytest.approx(-masked_mean(adv, mask).item(), abs=1e-6)
    assert stats["losses/value_loss"] == 0.0
    assert stats["losses/clipfrac"] == 0.0 and stats["losses/approx_kl"] == pytest.approx(0.0, abs=1e-7)
    assert loss.item() == pytest.approx(-masked_mean(adv, mask).item(), abs=1e-6)


def test_ppo_loss_clips_beyond_epsilon():
    cfg = PPOConfig(cliprange=0.2, vf_coef=0.1)
    ratios = torch.tensor([[1.5, 1.5, 0.5, 0.5]])
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    zeros, mask = torch.zeros(1, 4), torch.ones(1, 4)
    loss, stats = ppo_loss(ratios.log(), zeros, adv, zeros, zeros, zeros, mask, cfg)
    # per token max(-A*r, -A*clip(r, 0.8, 1.2)):
    #   A=+1 r=1.5: max(-1.5, -1.2) = -1.2 (clipped)   A=-1 r=1.5: max(1.5, 1.2) = 1.5
    #   A=+1 r=0.5: max(-0.5, -0.8) = -0.5             A=-1 r=0.5: max(0.5, 0.8) = 0.8 (clipped)
    assert stats["losses/policy_loss"] == pytest.approx((-1.2 + 1.5 - 0.5 + 0.8) / 4)  # 0.15
    assert stats["losses/clipfrac"] == 1.0
    assert loss.item() == pytest.approx(0.15)


def test_value_loss_is_clipped_around_old_values():
    cfg = PPOConfig(cliprange_value=0.2)
    one = torch.ones(1, 1)
    _, stats = ppo_loss(0 * one, 0 * one, 0 * one, 0.5 * one, 0 * one, one, one, cfg)
    # unclipped (0.5 - 1)^2 = 0.25; clipped value 0.2 -> (0.2 - 1)^2 = 0.64; 0.5 * max = 0.32
    assert stats["losses/value_loss"] == pytest.approx(0.32)


# ----------------------------------------------------------------------------- update


def _tiny_rollout(tiny_lm, tokenizer, prompts, cfg):
    policy = PolicyWithValue(copy.deepcopy(tiny_lm))
    torch.manual_seed(0)
    ro = rollout(policy, tiny_lm, tokenizer, prompts, cfg)
    scores = torch.zeros_like(ro.logprobs)
    scores[:, 0] = torch.linspace(0, 1, len(prompts))
    rewards, _ = compute_rewards(scores, ro.logprobs, ro.ref_logprobs, ro.response_mask, cfg.kl_coef)
    return policy, ro, *compute_gae(rewards, ro.values, ro.response_mask, cfg.gamma, cfg.lam)


def test_micro_batches_accumulate_to_the_full_batch_gradient(tiny_lm, tokenizer):
    cfg = small_cfg(batch_size=4, mini_batch_size=4, max_new_tokens=6)
    policy, ro, adv, ret = _tiny_rollout(tiny_lm, tokenizer, PROMPTS, cfg)
    ro.response_mask[1, 3:] = 0.0  # uneven lengths: micro-batches trim their padding columns
    ro.response_mask[3, 1:] = 0.0
    results = []
    for micro in (4, 1):
        model = copy.deepcopy(policy)
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        stats = train_minibatch(model, optimizer, ro, torch.arange(4), adv, ret,
                                small_cfg(batch_size=4, mini_batch_size=4, micro_batch_size=micro))
        results.append((model, stats))
    (full, full_stats), (micro, micro_stats) = results
    for p_full, p_micro in zip(full.parameters(), micro.parameters()):
        assert torch.allclose(p_full, p_micro, atol=1e-5)
    assert micro_stats["losses/value_loss"] == pytest.approx(full_stats["losses/value_loss"], rel=1e-4)


def test_target_kl_stops_updates_early(tiny_lm, tokenizer):
    cfg = small_cfg(batch_size=4, mini_batch_size=1, ppo_epochs=2, learning_rate=1e-2, target_kl=1e-9)
    policy, ro, adv, ret = _tiny_rollout(tiny_lm, tokenizer, PROMPTS, cfg)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.learning_rate)
    stats = ppo_update(policy, optimizer, ro, adv, ret, cfg)
    # first mini-batch has ratio 1 (kl 0), the second sees the moved policy and stops
    assert stats["ppo/early_stopped"] == 1.0 and stats["ppo/updates"] == 2.0


# ----------------------------------------------------------------------------- real update


def _fixed_batch_loss(policy, ro, advantages, returns, cfg) -> float:
    with torch.no_grad():
        logits, values = response_logits_and_values(
            policy, ro.input_ids, ro.attention_mask, ro.context_length, cfg.temperature
        )
        loss, _ = ppo_loss(logprobs_from_logits(logits, ro.responses), ro.logprobs, advantages, values,
                           ro.values, returns, ro.response_mask, cfg)
    return loss.item()


@pytest.mark.slow
def test_real_ppo_update_changes_weights_and_lowers_loss(tokenizer):
    cfg = small_cfg(ppo_epochs=2)
    lm = load_causal_lm(MODEL_DIR)
    policy = PolicyWithValue(lm)
    torch.manual_seed(0)
    ro = rollout(policy, lm, tokenizer, PROMPTS[:2], cfg)  # reference = policy at sampling time
    scores = torch.zeros_like(ro.logprobs)
    last = ro.response_mask.sum(1).long() - 1
    scores[torch.arange(2), last] = torch.tensor([1.0, 0.0])  # first completion good, second bad
    rewards, _ = compute_rewards(scores, ro.logprobs, ro.ref_logprobs, ro.response_mask, cfg.kl_coef)
    advantages, returns = compute_gae(rewards, ro.values, ro.response_mask, cfg.gamma, cfg.lam)
    whitened = masked_whiten(advantages, ro.response_mask)

    weight = lm.model.layers[0].self_attn.q_proj.weight
    before_w, before_head = weight.detach().clone(), policy.value_head.weight.detach().clone()
    loss_before = _fixed_batch_loss(policy, ro, whitened, returns, cfg)
    optimizer = torch.optim.AdamW(
        [{"params": lm.parameters(), "lr": cfg.learning_rate},
         {"params": policy.value_head.parameters(), "lr": cfg.critic_learning_rate}]
    )
    stats = ppo_update(policy, optimizer, ro, advantages, returns, cfg)
    loss_after = _fixed_batch_loss(policy, ro, whitened, returns, cfg)

    assert not torch.equal(weight, before_w) and not torch.equal(policy.value_head.weight, before_head)
    assert loss_after < loss_before
    assert stats["ppo/updates"] == 2.0
    assert {"losses/policy_loss", "losses/value_loss", "losses/approx_kl", "losses/clipfrac",
            "losses/entropy"} <= set(stats)



def test_kl_penalty_lowers_the_reward_where_the_policy_is_more_likely_than_the_reference():
    """Hand-computed r_t = score_t - kl_coef * (logp_t - ref_logp_t): a flipped sign fails (needs no verl)."""
    scores = torch.tensor([[0.0, 0.0, 1.0]])
    logp, ref_logp = torch.tensor([[-1.0, -3.0, -2.0]]), torch.tensor([[-2.0, -2.0, -2.0]])
    rewards, kl = compute_rewards(scores, logp, ref_logp, torch.ones(1, 3), kl_coef=0.5)
    assert kl.tolist() == [[1.0, -1.0, 0.0]]
    assert rewards.tolist() == [[-0.5, 0.5, 1.0]]  # more likely than the reference (kl > 0) costs reward


def test_gae_ends_the_episode_at_a_hole_in_the_mask():
    """Hand-computed, gamma = lam = 1: the advantage sums the rewards up to the hole; a GAE that skips it fails.

    A 0 inside the mask ends the episode there (nextnonterminal = mask[t + 1]); carried across
    the hole (veRL's multi-turn behaviour) the first two advantages would be 1.5 - v_t.
    """
    mask = torch.tensor([[1.0, 1.0, 0.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    rewards = torch.tensor([[0.0, 0.5, 0.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    values = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]], dtype=torch.float64)
    advantages, returns = compute_gae(rewards, values, mask, gamma=1.0, lam=1.0)
    expected = torch.tensor([[0.5 - 0.1, 0.5 - 0.2, 0.0, 1.0 - 0.4, 1.0 - 0.5, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(advantages, expected)
    torch.testing.assert_close(returns, (expected + values) * mask)
