"""veRL as an oracle for the PPO maths of ``r2_write.rl.ppo``: one seeded batch through both.

The batch is right-padded with masks of different lengths, rewards at several positions of
each row (step rewards plus the outcome on the last token) and random numbers on the padding
that neither implementation may read. Pairs compared (``verl.trainer.ppo.core_algos`` 0.9.1):

    ours                                   veRL
    compute_rewards -> kl                  kl_penalty(.., "kl") * mask       (as ray_trainer.apply_kl_penalty)
    compute_rewards -> rewards             compute_rewards(scores, logp, ref_logp, kl_coef)
    masked_whiten(compute_gae -> adv)      compute_gae_advantage_return -> advantages (whitened inside)
    compute_gae -> returns                 compute_gae_advantage_return -> returns
    ppo_loss losses/policy_loss            compute_policy_loss_vanilla, token-mean, no dual-clip
    ppo_loss losses/value_loss             compute_value_loss, token-mean
    ppo_loss loss (shared critic)          policy loss + vf_coef * value loss
    ppo_loss losses/value_clipfrac         compute_value_loss -> vf_clipfrac
    ppo_loss(new_values=None), value_loss  policy loss, value loss (separate critic, where ppo.py has one)

The losses get identical advantages/returns (not each side's GAE), so each phase is checked
on its own. ``tests/rl/test_verl_oracle.py`` asserts these pairs and documents every
difference; this script prints the max absolute difference on masked positions::

    make test-oracle                                          # installs verl, runs the test
    .venv/bin/python benchmarks/verl_oracle.py                # this table
    .venv/bin/python benchmarks/verl_oracle.py --ppo /tmp/flip/ppo.py   # another ppo.py (a mutant)
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch

from r2_write.rl.ppo_config import PPOConfig
from r2_write.rl.utils import masked_whiten

LENGTHS = (12, 9, 5, 2, 7, 12, 3, 10)  # response tokens per row; the batch is max(LENGTHS) wide


@dataclass(frozen=True)
class Params:
    gamma: float = 1.0
    lam: float = 0.95
    kl_coef: float = 0.05
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1


def load_ppo(path: str | Path | None = None) -> ModuleType:
    """``r2_write.rl.ppo``, or the module in the file ``path`` (a copy, e.g. with a planted bug)."""
    if path is None:
        from r2_write.rl import ppo

        return ppo
    name = f"ppo_under_test_{Path(path).stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def make_batch(seed: int = 0, lengths: tuple[int, ...] = LENGTHS, dtype=torch.float64) -> dict[str, torch.Tensor]:
    """Seeded ``[B, T]`` inputs; every tensor holds random numbers on the padding too."""
    g = torch.Generator().manual_seed(seed)
    n, width = len(lengths), max(lengths)

    def randn() -> torch.Tensor:
        return torch.randn(n, width, generator=g, dtype=dtype)

    last = torch.tensor(lengths) - 1
    mask = (torch.arange(width) < last[:, None] + 1).to(dtype)
    steps = (torch.rand(n, width, generator=g) < 0.4) | (torch.arange(width) == last[:, None] // 2)
    scores = torch.where(steps, 0.5 * randn(), 0.0)  # step rewards at ~40% of the tokens and mid-row
    scores[torch.arange(n), last] += 2.0 * torch.randn(n, generator=g, dtype=dtype)  # outcome on the last token
    scores = scores * mask + 3.0 * randn() * (1 - mask)
    ref_logprobs = -3.0 * torch.rand(n, width, generator=g, dtype=dtype)
    logprobs = ref_logprobs + 0.3 * randn()
    values = randn()
    return {
        "mask": mask,
        "scores": scores,
        "logprobs": logprobs,
        "ref_logprobs": ref_logprobs,
        "values": values,
        # update-phase inputs; |log-ratio| <= 1 keeps every ratio below e < 3 (veRL's dual-clip
        # bound clip_ratio_c) and far inside veRL's [-20, 20] log-ratio clamp
        "new_logprobs": logprobs + (0.4 * randn()).clamp(-1.0, 1.0),
        "new_values": values + 0.3 * randn(),
        "advantages": randn(),
        "returns": values + randn(),
    }


def project_outputs(ppo: ModuleType, b: dict[str, torch.Tensor], p: Params) -> dict[str, torch.Tensor]:
    """The project's quantities (scalars as 0-d tensors)."""
    rewards, kl = ppo.compute_rewards(b["scores"], b["logprobs"], b["ref_logprobs"], b["mask"], p.kl_coef)
    advantages, returns = ppo.compute_gae(rewards, b["values"], b["mask"], p.gamma, p.lam)
    cfg = PPOConfig(cliprange=p.cliprange, cliprange_value=p.cliprange_value, vf_coef=p.vf_coef, ent_coef=0.0)
    loss, stats = ppo.ppo_loss(
        b["new_logprobs"], b["logprobs"], b["advantages"], b["new_values"], b["values"], b["returns"], b["mask"], cfg
    )
    out = {
        "kl": kl,
        "rewards": rewards,
        "advantages": masked_whiten(advantages, b["mask"]),  # ppo_update whitens; veRL's GAE does it inside
        "raw_advantages": advantages,
        "returns": returns,
        "policy_loss": torch.tensor(stats["losses/policy_loss"], dtype=loss.dtype),
        "value_loss": torch.tensor(stats["losses/value_loss"], dtype=loss.dtype),
        "total_loss": loss.detach(),
        "value_clipfrac": torch.tensor(stats["losses/value_clipfrac"], dtype=loss.dtype),
        "pg_clipfrac": torch.tensor(stats["losses/clipfrac"], dtype=loss.dtype),
    }
    if hasattr(ppo, "value_loss"):  # a separate critic (veRL's layout): actor and critic losses apart
        out["actor_loss"] = ppo.ppo_loss(
            b["new_logprobs"], b["logprobs"], b["advantages"], None, b["values"], b["returns"], b["mask"], cfg
        )[0].detach()
        out["critic_loss"] = ppo.value_loss(b["new_values"], b["values"], b["returns"], b["mask"], cfg)[0].detach()
    return out


def verl_outputs(b: dict[str, torch.Tensor], p: Params, clip_ratio_c: float = 1e9) -> dict[str, torch.Tensor]:
    """veRL's quantities; ``clip_ratio_c`` 1e9 switches its dual-clip off (veRL's default is 3)."""
    from verl.trainer.ppo import core_algos
    from verl.workers.config import ActorConfig

    mask = b["mask"]
    kl = core_algos.kl_penalty(b["logprobs"], b["ref_logprobs"], kl_penalty="kl") * mask
    rewards = core_algos.compute_rewards(b["scores"], b["logprobs"], b["ref_logprobs"], p.kl_coef)
    advantages, returns = core_algos.compute_gae_advantage_return(rewards, b["values"], mask, p.gamma, p.lam)
    actor = ActorConfig(
        strategy="fsdp", rollout_n=1, ppo_micro_batch_size_per_gpu=1, clip_ratio=p.cliprange,
        clip_ratio_low=p.cliprange, clip_ratio_high=p.cliprange, clip_ratio_c=clip_ratio_c,
    )
    pg_loss, pg_metrics = core_algos.get_policy_loss_fn("vanilla")(
        b["logprobs"], b["new_logprobs"], b["advantages"], mask, loss_agg_mode="token-mean", config=actor
    )
    vf_loss, vf_clipfrac = core_algos.compute_value_loss(
        b["new_values"], b["returns"], b["values"], mask, p.cliprange_value, loss_agg_mode="token-mean"
    )
    return {
        "kl": kl,
        "rewards": rewards,
        "advantages": advantages,
        "returns": returns,
        "policy_loss": pg_loss,
        "value_loss": vf_loss,
        "total_loss": pg_loss + p.vf_coef * vf_loss,
        "actor_loss": pg_loss,
        "critic_loss": vf_loss,
        "value_clipfrac": vf_clipfrac,
        "pg_clipfrac": torch.tensor(pg_metrics["actor/pg_clipfrac"], dtype=pg_loss.dtype),
    }


def max_abs_diffs(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], mask: torch.Tensor) -> dict[str, float]:
    """Max ``|a - b|`` per quantity both have, over the masked positions of ``[B, T]`` tensors."""
    keep = mask.bool()
    out = {}
    for key in a.keys() & b.keys():
        x, y = a[key].double(), b[key].double()
        out[key] = float((x[keep] - y[keep] if x.dim() else x - y).abs().max())
    return out


ROWS = ("kl", "rewards", "advantages", "returns", "policy_loss", "value_loss", "total_loss", "value_clipfrac",
        "actor_loss", "critic_loss")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ppo", default=None, help="path of a ppo.py to check instead of r2_write.rl.ppo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gamma", type=float, default=Params.gamma)
    parser.add_argument("--lam", type=float, default=Params.lam)
    args = parser.parse_args()
    import verl

    b, p = make_batch(args.seed), Params(gamma=args.gamma, lam=args.lam)
    diffs = max_abs_diffs(project_outputs(load_ppo(args.ppo), b, p), verl_outputs(b, p), b["mask"])
    print(f"r2_write.rl.ppo{' at ' + args.ppo if args.ppo else ''} vs verl {verl.__version__} "
          f"(seed {args.seed}, gamma {p.gamma}, lam {p.lam}, float64, rows of {list(LENGTHS)} tokens)")
    print(f"{'quantity':<16} max abs diff (masked)")
    for key in (k for k in ROWS if k in diffs):
        print(f"{key:<16} {diffs[key]:.3e}")


if __name__ == "__main__":
    main()
