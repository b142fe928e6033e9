"""PPO with token-level process rewards: the algorithm, one testable function per phase.

One PPO step reads top to bottom like the algorithm (old TRL ``PPOTrainer.step`` and
cleanrl ``ppo.py``)::

    rollout          sample responses; old logprobs, reference logprobs, values, masks  (rl/rollout.py)
    reward_fn        judge outcome + reflection->revision steps     (r2_write.rewards.process)
    token_scores     outcome on the last token, lambda * step reward on each step's end token
    compute_rewards  r_t = score_t - kl_coef * (logprob_t - ref_logprob_t)
    compute_gae      advantages, returns = advantages + values
    ppo_update       epochs x mini-batches (train_minibatch) of ppo_loss: clipped policy + value loss
    critic_update    (separate critic only) epochs x mini-batches of the clipped value loss

This module holds the steps from ``token_scores`` on. :mod:`r2_write.rl.rollout` samples and
scores the responses, :mod:`r2_write.rl.model` holds the policy with its value head, the actor
and the separate critic (``PPOConfig.critic``: ``shared`` or ``separate``, as in veRL), and
:func:`r2_write.rl.trainer.train` loops the steps, logs metrics, checkpoints and resumes.
Tensors are ``[batch, response_tokens]``; ``mask`` is 1 on response tokens up to and including
the first EOS, 0 on the padding after it. With several processes the batch is global: advantage
whitening, loss weights and statistics use sums over the processes (:func:`sum_over_processes`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import nn

from r2_write.rewards.process import ProcessRewardConfig, token_rewards
from r2_write.rl.model import response_scores, response_values
from r2_write.rl.ppo_config import PPOConfig
from r2_write.rl.rollout import Rollout
from r2_write.rl.utils import masked_mean, masked_whiten


# ----------------------------------------------------------------------------- rewards and advantages


def token_scores(
    rollout: Rollout, results: list[dict], reward_cfg: ProcessRewardConfig, process_weight: float
) -> torch.Tensor:
    """Per-token scores ``[B, Tr]`` from the reward function's per-completion results.

    Each row holds :func:`r2_write.rewards.process.token_rewards` of its completion: the
    normalised outcome (or ``-format_penalty`` for a truncated or malformed completion) on the
    last response token, ``process_weight`` (lambda) x each version's reward on the token closing it.
    """
    scores = torch.zeros_like(rollout.logprobs)
    for i, res in enumerate(results):
        row = token_rewards(rollout.token_offsets[i], res, reward_cfg, process_weight)
        scores[i, : len(row)] = torch.tensor(row, dtype=scores.dtype)
    return scores


def compute_rewards(
    token_scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token reward: the score minus the KL penalty to the reference.

    Returns:
        ``(rewards, kl)`` with ``kl = logprob - ref_logprob`` and
        ``rewards = token_scores - kl_coef * kl``, both 0 on padding.

    >>> s, m = torch.tensor([[0.0, 1.0]]), torch.ones(1, 2)
    >>> logp, ref_logp = torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.5, -2.0]])
    >>> rewards, kl = compute_rewards(s, logp, ref_logp, m, kl_coef=0.1)
    >>> rewards.tolist(), kl.tolist()
    ([[-0.05000000074505806, 1.0]], [[0.5, 0.0]])
    """
    kl = (logprobs - ref_logprobs) * mask
    rewards = (token_scores - kl_coef * kl) * mask
    return rewards, kl


@torch.no_grad()
def compute_gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over response tokens (cleanrl's reverse loop).

    The episode ends after the last unmasked token (its next value is 0).

    Returns:
        ``(advantages, returns)``, ``returns = advantages + values``, both 0 on padding.
    """
    values = values * mask
    advantages = torch.zeros_like(rewards)
    lastgaelam = torch.zeros_like(rewards[:, 0])
    length = rewards.shape[1]
    for t in reversed(range(length)):
        if t == length - 1:
            nextnonterminal, nextvalues = torch.zeros_like(lastgaelam), torch.zeros_like(lastgaelam)
        else:
            nextnonterminal, nextvalues = mask[:, t + 1], values[:, t + 1]
        delta = rewards[:, t] + gamma * nextvalues * nextnonterminal - values[:, t]
        advantages[:, t] = lastgaelam = delta + gamma * lam * nextnonterminal * lastgaelam
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


# ----------------------------------------------------------------------------- PPO update


def ppo_loss(
    new_logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    new_values: torch.Tensor | None,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    cfg: PPOConfig,
    entropy: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped policy loss + ``vf_coef`` x clipped value loss (- ``ent_coef`` x entropy).

    Token-level means over ``mask``. With ratios of 1 the policy loss is ``-mean(A)``. With
    ``new_values`` None (an :class:`~r2_write.rl.model.Actor`: the separate critic learns from
    :func:`value_loss` in :func:`critic_update`) it is veRL's actor loss, the policy part alone.

    Returns:
        ``(loss, stats)``, stats under cleanrl names (``losses/policy_loss`` ...).
    """
    logratio = (new_logprobs - old_logprobs) * mask
    ratio = logratio.exp()
    pg_losses = -advantages * ratio
    pg_losses_clipped = -advantages * torch.clamp(ratio, 1.0 - cfg.cliprange, 1.0 + cfg.cliprange)
    pg_loss = masked_mean(torch.max(pg_losses, pg_losses_clipped), mask)

    loss = pg_loss
    with torch.no_grad():
        stats = {
            "losses/policy_loss": pg_loss.item(),
            "losses/approx_kl": masked_mean((ratio - 1) - logratio, mask).item(),
            "losses/clipfrac": masked_mean(((ratio - 1.0).abs() > cfg.cliprange).float(), mask).item(),
            "policy/ratio_mean": masked_mean(ratio, mask).item(),
        }
    if new_values is not None:
        vf_loss, value_stats = value_loss(new_values, old_values, returns, mask, cfg)
        loss = loss + cfg.vf_coef * vf_loss
        stats.update(value_stats)
    if entropy is not None and cfg.ent_coef:
        loss = loss - cfg.ent_coef * masked_mean(entropy, mask)
    if entropy is not None:
        stats["losses/entropy"] = masked_mean(entropy.detach(), mask).item()
    return loss, stats


def value_loss(
    new_values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, cfg: PPOConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped value loss ``0.5 x mean(max((V - R)^2, (V_clip - R)^2))``.

    ``V_clip`` is the new value kept within ``cliprange_value`` of the rollout's. It is the
    whole loss of a separate critic (veRL) and weighted by ``vf_coef`` in the shared one.

    Returns:
        ``(loss, stats)`` with ``losses/value_loss`` and ``losses/value_clipfrac``.
    """
    values_clipped = old_values + torch.clamp(new_values - old_values, -cfg.cliprange_value, cfg.cliprange_value)
    vf_losses = (new_values - returns) ** 2
    vf_losses_clipped = (values_clipped - returns) ** 2
    vf_loss = 0.5 * masked_mean(torch.max(vf_losses, vf_losses_clipped), mask)
    with torch.no_grad():
        stats = {
            "losses/value_loss": vf_loss.item(),
            "losses/value_clipfrac": masked_mean((vf_losses_clipped > vf_losses).float(), mask).item(),
        }
    return vf_loss, stats


def ppo_update(
    policy: nn.Module,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    cfg: PPOConfig,
    accelerator=None,
) -> dict[str, float]:
    """``ppo_epochs`` x mini-batches of :func:`ppo_loss` on one rollout batch.

    Advantages are whitened over the batch (``whiten_advantages``; the global batch: the
    statistics are summed over the processes); each mini-batch is accumulated over
    micro-batches (token-weighted over every process's rows, so it equals one big batch on one
    process), clipped to ``max_grad_norm`` and stepped. Updates stop early once a mini-batch's approximate KL
    exceeds ``target_kl``. A frozen policy (no parameter requires grad: the actor during the
    critic's warm-up) is left as it is.

    Args:
        policy: The policy with value head, or the :class:`~r2_write.rl.model.Actor` of a separate critic (policy
            loss only), possibly wrapped by accelerate.
        optimizer: Its optimizer.
        rollout: The batch, scored at sampling time (old logprobs and values).
        advantages: ``[B, Tr]`` from :func:`compute_gae`.
        returns: ``[B, Tr]`` value targets.
        cfg: PPO settings; the local mini-batch is ``len(rollout) / num_mini_batches``.
        accelerator: An ``accelerate.Accelerator`` (backward, grad clipping, no_sync); None = plain torch.

    Returns:
        Mean stats over the mini-batches plus ``losses/grad_norm``, ``ppo/updates`` and
        ``ppo/early_stopped`` (only the last two, 0, for a frozen policy).
    """
    if not any(p.requires_grad for p in policy.parameters()):
        return {"ppo/updates": 0.0, "ppo/early_stopped": 0.0}
    mask = rollout.response_mask
    if cfg.whiten_advantages:  # over the global batch: every process's rows (data parallel)
        advantages = masked_whiten(advantages, mask, all_reduce=sum_over_processes(accelerator))
    n = len(rollout)
    mini = max(1, -(-n // cfg.num_mini_batches))
    policy.train()
    all_stats, early_stopped = [], False
    for _epoch in range(cfg.ppo_epochs):
        perm = torch.randperm(n, device=mask.device)
        for start in range(0, n, mini):
            stats = train_minibatch(
                policy, optimizer, rollout, perm[start : start + mini], advantages, returns, cfg, accelerator
            )
            all_stats.append(stats)
            if cfg.target_kl is not None and stats["losses/approx_kl"] > cfg.target_kl:  # global: same on every process
                early_stopped = True
                break
        if early_stopped:
            break
    optimizer.zero_grad()
    policy.eval()
    out = _mean_stats(all_stats)
    out.update({"ppo/updates": float(len(all_stats)), "ppo/early_stopped": float(early_stopped)})
    return out


def train_minibatch(
    policy: nn.Module,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    idx: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    cfg: PPOConfig,
    accelerator=None,
) -> dict[str, float]:
    """One optimizer step of :func:`ppo_loss` on the rollout rows ``idx`` (see :func:`_accumulated_step`)."""

    def micro_loss(mi: torch.Tensor, cols: slice, ids: torch.Tensor, att: torch.Tensor):
        # chunked through the LM head: no [T, vocab] logits (entropy with gradient only when ent_coef > 0)
        new_logprobs, entropy, new_values = response_scores(
            policy, ids, att, rollout.context_length, cfg.temperature, cfg.logits_chunk_size,
            entropy=True, entropy_grad=bool(cfg.ent_coef))
        return ppo_loss(
            new_logprobs, rollout.logprobs[mi, cols], advantages[mi, cols],
            new_values.float() if new_values is not None else None, rollout.values[mi, cols], returns[mi, cols],
            rollout.response_mask[mi, cols], cfg, entropy,
        )

    stats, grad_norm = _accumulated_step(policy, optimizer, rollout, idx, cfg, accelerator, micro_loss)
    stats["losses/grad_norm"] = grad_norm
    return stats


def critic_update(
    critic: nn.Module,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    returns: torch.Tensor,
    cfg: PPOConfig,
    accelerator=None,
) -> dict[str, float]:
    """veRL's critic update: ``ppo_epochs`` x mini-batches of :func:`value_loss` (separate critic).

    Mini-batches as in :func:`ppo_update` (a shuffle of their own), accumulated over
    micro-batches, clipped to ``max_grad_norm`` on the critic's parameters and stepped by the
    critic's optimizer. No ``target_kl`` stop: that watches the policy.

    Args:
        critic: The :class:`~r2_write.rl.model.Critic` (possibly wrapped by accelerate).
        optimizer: Its optimizer (``critic_learning_rate``).
        rollout: The batch, with the critic's values at sampling time (the clipping anchor).
        returns: ``[B, Tr]`` value targets from :func:`compute_gae`.
        cfg: PPO settings.
        accelerator: An ``accelerate.Accelerator``; None = plain torch.

    Returns:
        Mean stats over the mini-batches (``losses/value_loss``, ``losses/value_clipfrac``,
        ``losses/critic_grad_norm``) plus ``critic/updates``.
    """
    n = len(rollout)
    mini = max(1, -(-n // cfg.num_mini_batches))
    critic.train()
    all_stats = []
    for _epoch in range(cfg.ppo_epochs):
        perm = torch.randperm(n, device=rollout.response_mask.device)
        for start in range(0, n, mini):
            idx = perm[start : start + mini]
            all_stats.append(train_critic_minibatch(critic, optimizer, rollout, idx, returns, cfg, accelerator))
    optimizer.zero_grad()
    critic.eval()
    return {**_mean_stats(all_stats), "critic/updates": float(len(all_stats))}


def train_critic_minibatch(
    critic: nn.Module,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    idx: torch.Tensor,
    returns: torch.Tensor,
    cfg: PPOConfig,
    accelerator=None,
) -> dict[str, float]:
    """One critic optimizer step of :func:`value_loss` on the rollout rows ``idx`` (see :func:`_accumulated_step`)."""

    def micro_loss(mi: torch.Tensor, cols: slice, ids: torch.Tensor, att: torch.Tensor):
        new_values = response_values(critic, ids, att, rollout.context_length).float()
        return value_loss(new_values, rollout.values[mi, cols], returns[mi, cols], rollout.response_mask[mi, cols], cfg)

    stats, grad_norm = _accumulated_step(critic, optimizer, rollout, idx, cfg, accelerator, micro_loss)
    stats["losses/critic_grad_norm"] = grad_norm
    return stats


def _accumulated_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    idx: torch.Tensor,
    cfg: PPOConfig,
    accelerator,
    micro_loss: Callable[[torch.Tensor, slice, torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict[str, float]]],
) -> tuple[dict[str, float], float]:
    """One optimizer step of ``model`` on the rollout rows ``idx``, accumulated over micro-batches.

    ``micro_loss(rows, cols, input_ids, attention_mask) -> (loss, stats)`` is the token-level
    mean loss of one micro-batch. Each is weighted by its share of the mini-batch's response
    tokens, so the gradient equals that of one token-level mean over the whole mini-batch.
    With several processes the mini-batch is the union of their rows: the shares are of the
    global token count (summed over the processes) and the loss is scaled by the number of
    processes, which data parallelism (DDP, FSDP) averages the gradients over; the stats are
    summed over the processes. One process with the whole batch gets the same gradient and
    stats. Response columns that are padding in every row of a micro-batch are dropped
    before the forward. The gradient is clipped to ``max_grad_norm`` over ``model``'s parameters.

    Returns:
        ``(token-weighted stats, gradient norm before clipping)``, the same on every process.
    """
    mask = rollout.response_mask
    all_reduce = sum_over_processes(accelerator)
    n_tokens = mask[idx].sum()
    if all_reduce is not None:
        n_tokens = all_reduce(n_tokens)
    n_tokens = n_tokens.clamp(min=1.0)
    n_proc = accelerator.num_processes if accelerator is not None else 1
    parts = idx.split(cfg.micro_batch_size)
    optimizer.zero_grad()
    stats: dict[str, float] = {}
    for k, mi in enumerate(parts):
        width = int(mask[mi].sum(1).max().item())
        cols = slice(0, width)
        ids = torch.cat([rollout.queries[mi], rollout.responses[mi, cols]], 1)
        att = torch.cat([rollout.query_mask[mi], torch.ones_like(rollout.responses[mi, cols])], 1)
        last_part = accelerator is None or k == len(parts) - 1
        with nullcontext() if last_part else accelerator.no_sync(model):
            loss, part_stats = micro_loss(mi, cols, ids, att)
            weight = (mask[mi].sum() / n_tokens).item()
            if accelerator is not None:
                accelerator.backward(loss * (weight * n_proc))
            else:
                (loss * weight).backward()
        for key, value in part_stats.items():
            stats[key] = stats.get(key, 0.0) + weight * value
    if all_reduce is not None and stats:
        summed = all_reduce(torch.tensor(list(stats.values()), dtype=torch.float64, device=mask.device))
        stats = dict(zip(stats, summed.tolist()))
    params = [p for p in model.parameters() if p.requires_grad]
    if accelerator is not None:
        grad_norm = accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
    else:
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
    optimizer.step()
    return stats, float(grad_norm)


def _mean_stats(all_stats: list[dict[str, float]]) -> dict[str, float]:
    """Key-wise mean of per-mini-batch stats."""
    return {key: sum(s[key] for s in all_stats) / len(all_stats) for key in all_stats[0]}


def sum_over_processes(accelerator) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """A function summing a tensor over the data-parallel processes; None for a single process (nothing to sum)."""
    if accelerator is None or accelerator.num_processes == 1:
        return None
    return lambda tensor: accelerator.reduce(tensor, reduction="sum")
