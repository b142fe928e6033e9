"""veRL's PPO maths as an oracle for ``r2_write.rl.ppo`` (compute_rewards, compute_gae, ppo_loss).

Identical seeded tensors go through both (``benchmarks/verl_oracle.py`` builds them and calls
each side): right padding with rows of different lengths, rewards at several positions per
row, random numbers on the padding. Results are compared on masked positions; every known
difference is written next to its assertion.

verl is part of the test install (``make install-test``: verl itself without its
dependencies, plus the ``oracle`` extra of pyproject.toml), so these tests fail, not skip,
where it is missing. Set
``ORACLE_PPO=/path/to/ppo.py`` to check another copy of ppo.py (e.g. one with a planted bug).
"""

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

from verl.trainer.ppo import core_algos  # noqa: E402 - installed by make install-test; missing = failure


def _load_oracle():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "verl_oracle.py"
    spec = importlib.util.spec_from_file_location("verl_oracle", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["verl_oracle"] = module
    spec.loader.exec_module(module)
    return module


oracle = _load_oracle()
PPO = oracle.load_ppo(os.environ.get("ORACLE_PPO") or None)

# (seed, dtype): float64 for tight tolerances, one float32 case as training runs it
CASES = [(0, torch.float64), (1, torch.float64), (2, torch.float64), (3, torch.float32)]
# (gamma, lam): the project's defaults, veRL's defaults, and a discounted case. gamma*lam = 1
# alone would hide a GAE that reads the padding: the padding's values then telescope away.
GAMMA_LAM = [(1.0, 0.95), (1.0, 1.0), (0.9, 0.8)]


def tol(dtype) -> dict:
    return {"atol": 1e-8, "rtol": 1e-8} if dtype == torch.float64 else {"atol": 2e-5, "rtol": 2e-5}


def run(seed, dtype, **params):
    b, p = oracle.make_batch(seed, dtype=dtype), oracle.Params(**params)
    return b, b["mask"].bool(), oracle.project_outputs(PPO, b, p), oracle.verl_outputs(b, p), p


def test_batch_has_what_the_oracle_needs():
    b = oracle.make_batch(0)
    mask, lengths = b["mask"].bool(), b["mask"].sum(1)
    assert len(set(lengths.tolist())) > 3 and (lengths < mask.shape[1]).sum() >= 4  # ragged right padding
    assert ((b["scores"] != 0) & mask).sum(1).min() >= 2  # rewards at several positions of every row
    logratio = (b["new_logprobs"] - b["logprobs"])[mask]
    assert logratio.abs().max() <= 1.0 and (logratio.abs() > 0.2).any()  # ratios get clipped, never > e
    assert (b["advantages"][mask] < 0).any() and (b["advantages"][mask] > 0).any()


@pytest.mark.parametrize("seed,dtype", CASES)
def test_kl_and_rewards(seed, dtype):
    b, m, ours, verl, _ = run(seed, dtype)
    # Both use the k1 estimator kl = logprob - ref_logprob (veRL: kl_penalty="kl", with
    # algorithm.use_kl_in_reward=True; ray_trainer.apply_kl_penalty multiplies it by the
    # response mask as ours does, so they agree on padding too). veRL's default is instead
    # use_kl_in_reward=False with a low_var_kl (k3) term in the actor loss, which ours lacks;
    # veRL's beta may be adaptive (AdaptiveKLController), ours is the fixed kl_coef.
    torch.testing.assert_close(ours["kl"], verl["kl"], atol=0, rtol=0)
    # rewards = scores - kl_coef * kl. veRL's core_algos.compute_rewards does not mask: its
    # padding holds scores - beta*kl (the padding's junk here), ours 0. Masked positions only.
    torch.testing.assert_close(ours["rewards"][m], verl["rewards"][m], **tol(dtype))
    assert (ours["rewards"][~m] == 0).all()


@pytest.mark.parametrize("gamma,lam", GAMMA_LAM)
@pytest.mark.parametrize("seed,dtype", CASES)
def test_gae(seed, dtype, gamma, lam):
    b, m, ours, verl, _ = run(seed, dtype, gamma=gamma, lam=lam)
    # veRL's GAE reads its own unmasked rewards (junk on padding) and raw values (junk on
    # padding): it never lets a masked token into a masked-in one, as ours (which zeroes
    # rewards and values on padding first) does not either.
    # veRL whitens the advantages inside compute_gae_advantage_return; ours returns them raw
    # and ppo_update whitens them (whiten_advantages, default on) with masked_whiten, which is
    # veRL's masked_whiten except that ours sets padding to 0 (veRL leaves (0 - mean) / std
    # there) and divides masked means by max(n, 1) instead of n + 1e-8 (a ~1e-10 difference).
    torch.testing.assert_close(ours["advantages"][m], verl["advantages"][m], **tol(dtype))
    assert (ours["advantages"][~m] == 0).all() and (verl["advantages"][~m] != 0).any()
    # Returns = raw (unwhitened) advantages + values on both sides; veRL's padding holds
    # 0 + the padding's values, ours 0.
    torch.testing.assert_close(ours["returns"][m], verl["returns"][m], **tol(dtype))
    assert (ours["returns"][~m] == 0).all()


@pytest.mark.parametrize("seed,dtype", CASES)
def test_policy_loss(seed, dtype):
    b, m, ours, verl, p = run(seed, dtype)
    # Clipped surrogate, token-mean over the mask on both sides (veRL: loss_agg_mode
    # "token-mean", i.e. masked_sum / mask.sum(); ours masked_mean). Differences that this
    # batch does not reach: veRL clamps the log-ratio to [-20, 20] (here |log-ratio| <= 1);
    # veRL allows asymmetric clip_ratio_low/high (set to our symmetric cliprange); veRL's
    # dual-clip caps -A*ratio at -A*clip_ratio_c for A < 0 (switched off here with
    # clip_ratio_c=1e9; see test_dual_clip_is_veRLs_only_policy_loss_difference).
    torch.testing.assert_close(ours["policy_loss"], verl["policy_loss"], **tol(dtype))
    # With veRL's default clip_ratio_c=3 the result is the same here: every ratio is < e < 3.
    verl_c3 = oracle.verl_outputs(b, p, clip_ratio_c=3.0)
    torch.testing.assert_close(ours["policy_loss"], verl_c3["policy_loss"], **tol(dtype))
    # Metrics with different definitions (not asserted equal): our losses/clipfrac counts
    # tokens with |ratio - 1| > cliprange, veRL's actor/pg_clipfrac only those where the
    # clipped term wins the max (the clip is active), so ours >= veRL's. Our
    # losses/approx_kl is k3 ((ratio - 1) - log ratio), veRL's actor/ppo_kl is k1 (-log ratio).
    assert ours["pg_clipfrac"] >= verl["pg_clipfrac"] - 1e-6


def test_dual_clip_is_veRLs_only_policy_loss_difference():
    b = oracle.make_batch(0)
    b["new_logprobs"] = b["logprobs"] + 2.0  # every ratio e^2 ~ 7.4 > clip_ratio_c = 3
    p = oracle.Params()
    ours, verl_off, verl_c3 = (
        oracle.project_outputs(PPO, b, p), oracle.verl_outputs(b, p), oracle.verl_outputs(b, p, clip_ratio_c=3.0)
    )
    # Ours has no dual-clip: for A < 0 the loss -A*ratio grows without bound in the ratio.
    torch.testing.assert_close(ours["policy_loss"], verl_off["policy_loss"], **tol(torch.float64))
    # veRL's default caps it at -A*3 per token, so its loss is lower by sum(|A| (e^2 - 3)) / n.
    m = b["mask"].bool()
    adv = b["advantages"][m]
    gap = (adv.abs() * (torch.e**2 - 3.0) * (adv < 0)).sum() / m.sum()
    torch.testing.assert_close(ours["policy_loss"] - verl_c3["policy_loss"], gap, **tol(torch.float64))


@pytest.mark.parametrize("seed,dtype", CASES)
def test_value_loss(seed, dtype):
    b, m, ours, verl, p = run(seed, dtype)
    # Both: 0.5 * token-mean of max((v - R)^2, (clip(v, v_old +- cliprange_value) - R)^2);
    # the 0.5 is inside both functions. Ours clips as v_old + clamp(v - v_old), veRL with
    # clip_by_value(v, v_old - c, v_old + c): the same up to rounding. (veRL's critic default
    # cliprange_value is 0.5, ours 0.2: a setting, passed equal here.)
    torch.testing.assert_close(ours["value_loss"], verl["value_loss"], **tol(dtype))
    # Ours computes clip fractions in float32 (bool.float()), hence the 1e-6.
    torch.testing.assert_close(ours["value_clipfrac"], verl["value_clipfrac"], atol=1e-6, rtol=0)


@pytest.mark.parametrize("seed,dtype", CASES)
def test_shared_critic_total_loss(seed, dtype):
    b, m, ours, verl, p = run(seed, dtype)
    # A shared critic (value head on the policy) trains one model on pg + vf_coef * vf; veRL
    # has no such loss (its critic is a separate model). With ent_coef 0 ours is that sum.
    torch.testing.assert_close(ours["total_loss"], verl["policy_loss"] + p.vf_coef * verl["value_loss"], **tol(dtype))


@pytest.mark.parametrize("seed,dtype", CASES)
def test_separate_critic_losses(seed, dtype):
    if not hasattr(PPO, "value_loss"):
        pytest.skip("this ppo.py has no separate critic (value_loss)")
    b, m, ours, verl, p = run(seed, dtype)
    # veRL's layout: the actor learns from the policy loss alone, the critic from the value
    # loss alone (no vf_coef): ppo_loss(new_values=None) and value_loss.
    torch.testing.assert_close(ours["actor_loss"], verl["actor_loss"], **tol(dtype))
    torch.testing.assert_close(ours["critic_loss"], verl["critic_loss"], **tol(dtype))


def test_gae_differs_on_a_mask_with_a_hole():
    # A 0 inside the mask: ours ends the episode there (nextnonterminal = mask[t + 1]); veRL
    # skips the token and carries value and advantage across it (multi-turn observation
    # tokens). Our response_mask is always a prefix (1 up to the first EOS), so PPO never
    # sees a hole; this pins the difference so that a change on either side is noticed.
    mask = torch.tensor([[1.0, 1.0, 0.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    rewards = torch.tensor([[0.0, 0.5, 0.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    values = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]], dtype=torch.float64)
    ours, _ = PPO.compute_gae(rewards, values, mask, 1.0, 1.0)
    _, returns = core_algos.compute_gae_advantage_return(rewards, values, mask, 1.0, 1.0)
    verl = (returns - values) * mask  # veRL's raw advantages (its returns are unwhitened)
    # gamma = lam = 1: the advantage is the sum of the rewards up to the episode's end - v_t
    expected_ours = torch.tensor([[0.5 - 0.1, 0.5 - 0.2, 0.0, 1.0 - 0.4, 1.0 - 0.5, 0.0]], dtype=torch.float64)
    expected_verl = torch.tensor([[1.5 - 0.1, 1.5 - 0.2, 0.0, 1.0 - 0.4, 1.0 - 0.5, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(ours, expected_ours)
    torch.testing.assert_close(verl, expected_verl)
