"""Score a completion text the way the PPO trainer does, for the reward tests.

The text is tokenized with the embedded model's tokenizer (SmolLM2) plus EOS and decoded as a
rollout decodes it (:func:`r2_write.rl.rollout.decode_with_offsets`), scored by
``process_reward_fn``, placed on tokens by :func:`r2_write.rl.ppo.token_scores` and turned into
per-token rewards by :func:`r2_write.rl.ppo.compute_rewards` (KL 0: the policy is the
reference). The total is what PPO adds up over the completion.
"""

from __future__ import annotations

import functools

import torch
from transformers import AutoTokenizer

from r2_write.rewards.process import ProcessRewardConfig, process_reward_fn
from r2_write.rl.ppo import compute_rewards, token_scores
from r2_write.rl.ppo_config import PPOConfig
from r2_write.rl.rollout import Rollout, decode_with_offsets

MODEL_DIR = "data/06_models/base_model"
PROMPT = "Describe a harbour."


@functools.cache
def tokenizer():
    return AutoTokenizer.from_pretrained(MODEL_DIR)


def as_rollout(text: str, truncated: bool = False) -> Rollout:
    """A one-row rollout of ``text`` (+ EOS unless truncated), decoded as the trainer decodes it."""
    tok = tokenizer()
    ids = tok(text, add_special_tokens=False)["input_ids"] + ([] if truncated else [tok.eos_token_id])
    completion, offsets = decode_with_offsets(tok, ids)
    n = len(ids)
    logprobs = torch.full((1, n), -1.0, dtype=torch.float64)
    return Rollout(
        prompts=[PROMPT], queries=torch.zeros(1, 1, dtype=torch.long), query_mask=torch.ones(1, 1),
        responses=torch.tensor([ids]), response_mask=torch.ones(1, n, dtype=torch.float64),
        truncated=torch.tensor([truncated]), logprobs=logprobs, ref_logprobs=logprobs.clone(),
        values=torch.zeros(1, n, dtype=torch.float64), completions=[completion], token_offsets=[offsets],
    )


def trainer_totals(text: str, judge, cfg: ProcessRewardConfig, process_weights=(0.5, 1.0),
                   truncated: bool = False) -> tuple[dict[float, float], dict]:
    """({lambda: total per-token reward PPO sees}, the reward result) for one completion."""
    ro = as_rollout(text, truncated)
    res = process_reward_fn(judge, cfg)(ro.prompts, ro.completions, truncated=[truncated])
    totals = {}
    for lam in process_weights:
        scores = token_scores(ro, res, cfg, lam)
        rewards, _ = compute_rewards(scores, ro.logprobs, ro.ref_logprobs, ro.response_mask, PPOConfig().kl_coef)
        totals[lam] = float(rewards.sum())
    return totals, res[0]


def trainer_total(text: str, judge, truncated: bool = False, cfg: ProcessRewardConfig | None = None,
                  process_weight: float | None = None) -> tuple[float, dict]:
    """(total per-token reward PPO sees, the reward result) for one completion at one lambda."""
    cfg = cfg or ProcessRewardConfig()
    lam = PPOConfig().process_weight if process_weight is None else process_weight
    totals, res = trainer_totals(text, judge, cfg, (lam,), truncated)
    return totals[lam], res
