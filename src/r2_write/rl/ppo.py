"""PPO with token-level process rewards, one testable function per phase.

One PPO step reads top to bottom like the algorithm (old TRL ``PPOTrainer.step`` and
cleanrl ``ppo.py``)::

    rollout        sample responses; old logprobs, reference logprobs, values, masks
    reward_fn      judge outcome + reflection->revision steps     (r2_write.rewards.process)
    token_scores   outcome on the last token, lambda * step reward on each step's end token
    compute_rewards  r_t = score_t - kl_coef * (logprob_t - ref_logprob_t)
    compute_gae      advantages, returns = advantages + values
    ppo_update       epochs x mini-batches (train_minibatch) of ppo_loss: clipped policy + value loss

:func:`train` loops these steps, logs metrics, checkpoints and resumes. Tensors are
``[batch, response_tokens]``; ``mask`` is 1 on response tokens up to and including the
first EOS, 0 on the padding after it.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from r2_write.rewards.process import ProcessRewardConfig, normalise_score, token_rewards
from r2_write.rl.ppo_config import PPOConfig
from r2_write.rl.utils import entropy_from_logits, logprobs_from_logits, masked_mean, masked_var, masked_whiten
from r2_write.training.checkpoints import STATE_FILE, latest_checkpoint, prune_checkpoints, remove_checkpoints

logger = logging.getLogger(__name__)

VALUE_HEAD_FILE, OPTIMIZER_FILE = "value_head.pt", "optimizer.pt"


# ----------------------------------------------------------------------------- model


class PolicyWithValue(nn.Module):
    """A causal LM (the actor) plus a scalar value head on its last hidden state (the critic).

    Args:
        lm: A transformers causal LM.
        value_head: An existing ``nn.Linear(hidden, 1)``; a fresh small one when None.
    """

    def __init__(self, lm: nn.Module, value_head: nn.Linear | None = None):
        super().__init__()
        self.lm = lm
        if value_head is None:
            hidden = lm.config.get_text_config().hidden_size
            value_head = nn.Linear(hidden, 1)
            nn.init.normal_(value_head.weight, std=1.0 / (hidden + 1) ** 0.5)
            nn.init.zeros_(value_head.bias)
        self.value_head = value_head.to(next(lm.parameters()).device)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(logits [B, T, V], values [B, T])`` for the last ``logits_to_keep`` positions (0 = all)."""
        out = self.lm(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids(attention_mask),
            logits_to_keep=logits_to_keep,
            output_hidden_states=True,
            use_cache=False,
        )
        hidden = out.hidden_states[-1]
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        values = self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1)
        return out.logits, values


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, as ``generate`` uses them (so scores match sampling)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def response_logits_and_values(
    policy: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, context_length: int, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Policy logits (divided by ``temperature``) and values at the positions predicting each response token."""
    n = input_ids.shape[1] - context_length
    logits, values = policy(input_ids, attention_mask, logits_to_keep=n + 1)
    return logits[:, :-1] / temperature, values[:, :-1]


def reference_logprobs(
    ref_model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    context_length: int,
    temperature: float,
) -> torch.Tensor:
    """Log-probabilities of the response tokens under the frozen reference model."""
    n = input_ids.shape[1] - context_length
    logits = ref_model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids(attention_mask),
        logits_to_keep=n + 1,
        use_cache=False,
    ).logits
    return logprobs_from_logits(logits[:, :-1] / temperature, input_ids[:, context_length:])


# ----------------------------------------------------------------------------- rollout


@dataclass
class Rollout:
    """One batch of sampled responses and everything PPO needs about them.

    ``queries`` are left-padded prompt tokens, ``responses`` right-padded response tokens;
    ``logprobs``/``ref_logprobs``/``values`` are ``[B, Tr]`` and only meaningful where
    ``response_mask`` is 1; ``truncated`` marks rows that hit ``max_new_tokens`` without an
    EOS. ``token_offsets[i]`` holds the ``(start, end)`` character span in
    ``completions[i]`` of each of the ``response_mask[i].sum()`` response tokens.
    """

    prompts: list[str]
    queries: torch.Tensor
    query_mask: torch.Tensor
    responses: torch.Tensor
    response_mask: torch.Tensor
    truncated: torch.Tensor
    logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    values: torch.Tensor
    completions: list[str]
    token_offsets: list[list[tuple[int, int]]]

    def __len__(self) -> int:
        return self.responses.shape[0]

    @property
    def context_length(self) -> int:
        return self.queries.shape[1]

    @property
    def input_ids(self) -> torch.Tensor:
        return torch.cat([self.queries, self.responses], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        # Response padding follows every real token, so causal attention never sees it from them.
        return torch.cat([self.query_mask, torch.ones_like(self.responses)], dim=1)


def encode_prompts(tokenizer, prompts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Chat-template each prompt as a user turn and left-pad: ``(input_ids, attention_mask)``."""
    rows = []
    for prompt in prompts:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        rows.append(tokenizer(text, add_special_tokens=False)["input_ids"][-max_length:])
    width = max(len(r) for r in rows)
    pad = _pad_id(tokenizer)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def response_mask(responses: torch.Tensor, eos_ids: list[int]) -> torch.Tensor:
    """1.0 on tokens up to and including the first EOS of each row, 0.0 after it.

    >>> response_mask(torch.tensor([[5, 2, 2, 2], [5, 6, 7, 8]]), [2]).tolist()
    [[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]]
    """
    is_eos = torch.isin(responses, torch.tensor(eos_ids, device=responses.device)).long()
    return ((is_eos.cumsum(1) - is_eos) == 0).float()


def decode_with_offsets(tokenizer, ids: list[int]) -> tuple[str, list[tuple[int, int]]]:
    """Decode response tokens and give each its ``(start, end)`` character span in the text.

    Re-tokenizing the text with the tokenizer's offset mapping gives the spans when it yields
    the same ids (the usual case); otherwise spans come from decoding growing prefixes.
    Special tokens (EOS) are not in the text and get an empty span where they occur.
    """
    special = set(tokenizer.all_special_ids)
    text = tokenizer.decode(ids, skip_special_tokens=True)
    plain = [t for t in ids if t not in special]
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if enc["input_ids"] == plain:
        spans = [tuple(o) for o in enc["offset_mapping"]]
    else:
        spans, prev = [], 0
        for i in range(len(plain)):
            end = min(max(len(tokenizer.decode(plain[: i + 1], skip_special_tokens=True)), prev), len(text))
            spans.append((prev, end))
            prev = end
    offsets, pos, it = [], 0, iter(spans)
    for t in ids:
        if t in special:
            offsets.append((pos, pos))
        else:
            offsets.append(next(it))
            pos = offsets[-1][1]
    return text, offsets


@torch.no_grad()
def rollout(
    policy: PolicyWithValue, ref_model: nn.Module, tokenizer, prompts: list[str], cfg: PPOConfig,
    sampler: "VLLMSampler | None" = None,
) -> Rollout:
    """Sample one response per prompt and score it with the policy, the critic and the reference.

    Args:
        policy: The (unwrapped) policy with value head.
        ref_model: The frozen reference causal LM.
        tokenizer: The policy's tokenizer (its chat template formats the prompts).
        prompts: User prompts, one response each (repeat a prompt for several samples).
        cfg: Sampling (temperature, top_p, max_new_tokens, ...) and batching settings.
        sampler: Samples the responses instead of ``policy.lm.generate`` (vLLM); the
            logprobs are computed by the policy either way.

    Returns:
        The :class:`Rollout`.
    """
    device = next(policy.parameters()).device
    queries, query_mask = (t.to(device) for t in encode_prompts(tokenizer, prompts, cfg.max_prompt_length))
    pad, eos_ids = _pad_id(tokenizer), _eos_ids(tokenizer, policy.lm)
    policy.eval()
    # 1. sample responses (batched, left-padded prompts)
    if sampler is not None:
        chunks = [torch.tensor([list(ids) or [pad]], device=device) for ids in sampler(queries, query_mask)]
    else:
        gen_cfg = _generation_config(cfg, pad, eos_ids)
        step = cfg.generation_batch_size or len(prompts)
        chunks = [
            policy.lm.generate(input_ids=queries[s : s + step], attention_mask=query_mask[s : s + step],
                               generation_config=gen_cfg)[:, queries.shape[1]:]
            for s in range(0, len(prompts), step)
        ]
    width = max(c.shape[1] for c in chunks)
    responses = torch.cat([nn.functional.pad(c, (0, width - c.shape[1]), value=pad) for c in chunks])
    mask = response_mask(responses, eos_ids)
    truncated = ~torch.isin(responses, torch.tensor(eos_ids, device=device)).any(1)
    responses = responses.masked_fill(mask == 0, pad)
    # 2. score them: old logprobs and values (policy), reference logprobs
    input_ids = torch.cat([queries, responses], 1)
    attention_mask = torch.cat([query_mask, torch.ones_like(responses)], 1)
    logprobs, values, ref_logprobs = [], [], []
    for s in range(0, len(prompts), cfg.micro_batch_size):
        ids, att = input_ids[s : s + cfg.micro_batch_size], attention_mask[s : s + cfg.micro_batch_size]
        logits, v = response_logits_and_values(policy, ids, att, queries.shape[1], cfg.temperature)
        logprobs.append(logprobs_from_logits(logits, ids[:, queries.shape[1]:]))
        values.append(v.float())
        ref_logprobs.append(reference_logprobs(ref_model, ids, att, queries.shape[1], cfg.temperature))
    # 3. decode, with character offsets for reward placement
    decoded = [
        decode_with_offsets(tokenizer, row[: int(n)].tolist()) for row, n in zip(responses.cpu(), mask.sum(1).cpu())
    ]
    return Rollout(
        prompts=list(prompts),
        queries=queries,
        query_mask=query_mask,
        responses=responses,
        response_mask=mask,
        truncated=truncated,
        logprobs=torch.cat(logprobs) * mask,
        ref_logprobs=torch.cat(ref_logprobs) * mask,
        values=torch.cat(values) * mask,
        completions=[text for text, _ in decoded],
        token_offsets=[offsets for _, offsets in decoded],
    )


class VLLMSampler:
    """Rollout sampling with vLLM inside the training process (``use_vllm: true``, GPU).

    A thin layer over TRL's ``VLLMGeneration`` in colocate mode: the engine shares the GPUs
    with training (``vllm_gpu_memory_utilization``), samples plain (no top-k, the policy's
    temperature and top-p) and gets the policy's weights after every update
    (:meth:`sync_weights`). It returns token ids only: the logprobs PPO needs are recomputed by
    the policy, as with ``generate``.
    """

    def __init__(self, lm: nn.Module, accelerator, tokenizer, cfg: PPOConfig, generation_cls=None):
        if generation_cls is None:
            from trl.import_utils import is_vllm_available

            if not is_vllm_available():
                raise ImportError("ppo.use_vllm needs vLLM: pip install 'r2_write[vllm]' on a GPU machine, "
                                  "or set use_vllm: false")
            from trl.generation.vllm_generation import VLLMGeneration as generation_cls
        self.generation = generation_cls(
            model=lm, accelerator=accelerator, processing_class=tokenizer, mode="colocate",
            tensor_parallel_size=cfg.vllm_tensor_parallel_size, gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
            max_model_length=cfg.max_prompt_length + cfg.max_new_tokens, temperature=cfg.temperature,
            top_p=cfg.top_p, top_k=0, max_completion_length=cfg.max_new_tokens,
        )

    def __call__(self, queries: torch.Tensor, query_mask: torch.Tensor) -> list[list[int]]:
        """Completion token ids for each left-padded query row (padding removed first)."""
        prompts = [row[mask.bool()].tolist() for row, mask in zip(queries.cpu(), query_mask.cpu())]
        _, completion_ids, _, _ = self.generation.generate(prompts, images=None, num_generations=1)
        return completion_ids

    def sync_weights(self) -> None:
        self.generation.sync_weights()


# ----------------------------------------------------------------------------- rewards and advantages


def token_scores(rollout: Rollout, results: list[dict], reward_cfg: ProcessRewardConfig) -> torch.Tensor:
    """Per-token scores ``[B, Tr]`` from the reward function's per-completion results.

    Each row holds :func:`r2_write.rewards.process.token_rewards` of its completion: the
    normalised outcome (or ``-format_penalty`` for a truncated or malformed completion) on the
    last response token, ``process_weight`` x each version's reward on the token closing it.
    """
    scores = torch.zeros_like(rollout.logprobs)
    for i, res in enumerate(results):
        row = token_rewards(rollout.token_offsets[i], res, reward_cfg)
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
    new_values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    cfg: PPOConfig,
    entropy: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped policy loss + ``vf_coef`` x clipped value loss (- ``ent_coef`` x entropy).

    Token-level means over ``mask``. With ratios of 1 the policy loss is ``-mean(A)``.

    Returns:
        ``(loss, stats)``, stats under cleanrl names (``losses/policy_loss`` ...).
    """
    logratio = (new_logprobs - old_logprobs) * mask
    ratio = logratio.exp()
    pg_losses = -advantages * ratio
    pg_losses_clipped = -advantages * torch.clamp(ratio, 1.0 - cfg.cliprange, 1.0 + cfg.cliprange)
    pg_loss = masked_mean(torch.max(pg_losses, pg_losses_clipped), mask)

    values_clipped = old_values + torch.clamp(new_values - old_values, -cfg.cliprange_value, cfg.cliprange_value)
    vf_losses = (new_values - returns) ** 2
    vf_losses_clipped = (values_clipped - returns) ** 2
    vf_loss = 0.5 * masked_mean(torch.max(vf_losses, vf_losses_clipped), mask)

    loss = pg_loss + cfg.vf_coef * vf_loss
    if entropy is not None and cfg.ent_coef:
        loss = loss - cfg.ent_coef * masked_mean(entropy, mask)
    with torch.no_grad():
        stats = {
            "losses/policy_loss": pg_loss.item(),
            "losses/value_loss": vf_loss.item(),
            "losses/approx_kl": masked_mean((ratio - 1) - logratio, mask).item(),
            "losses/clipfrac": masked_mean(((ratio - 1.0).abs() > cfg.cliprange).float(), mask).item(),
            "losses/value_clipfrac": masked_mean((vf_losses_clipped > vf_losses).float(), mask).item(),
            "policy/ratio_mean": masked_mean(ratio, mask).item(),
        }
        if entropy is not None:
            stats["losses/entropy"] = masked_mean(entropy, mask).item()
    return loss, stats


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

    Advantages are whitened over the batch (``whiten_advantages``); each mini-batch is
    accumulated over micro-batches (token-weighted, so it equals one big batch), clipped to
    ``max_grad_norm`` and stepped. Updates stop early once a mini-batch's approximate KL
    exceeds ``target_kl``.

    Args:
        policy: The policy with value head (possibly wrapped by accelerate).
        optimizer: Its optimizer.
        rollout: The batch, scored at sampling time (old logprobs and values).
        advantages: ``[B, Tr]`` from :func:`compute_gae`.
        returns: ``[B, Tr]`` value targets.
        cfg: PPO settings; the local mini-batch is ``len(rollout) / num_mini_batches``.
        accelerator: An ``accelerate.Accelerator`` (backward, grad clipping, no_sync); None = plain torch.

    Returns:
        Mean stats over the mini-batches plus ``losses/grad_norm``, ``ppo/updates`` and
        ``ppo/early_stopped``.
    """
    mask = rollout.response_mask
    if cfg.whiten_advantages:
        advantages = masked_whiten(advantages, mask)
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
            if cfg.target_kl is not None and (
                _mean_over_processes(stats["losses/approx_kl"], accelerator, mask.device) > cfg.target_kl
            ):
                early_stopped = True
                break
        if early_stopped:
            break
    optimizer.zero_grad()
    policy.eval()
    out = {key: sum(s[key] for s in all_stats) / len(all_stats) for key in all_stats[0]}
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
    """One optimizer step on the rollout rows ``idx``, accumulated over micro-batches.

    Each micro-batch's loss is weighted by its share of the mini-batch's response tokens, so
    the gradient equals that of one token-level mean over the whole mini-batch. Response
    columns that are padding in every row of a micro-batch are dropped before the forward.
    """
    mask = rollout.response_mask
    n_tokens = mask[idx].sum().clamp(min=1.0)
    parts = idx.split(cfg.micro_batch_size)
    ctx = rollout.context_length
    optimizer.zero_grad()
    stats: dict[str, float] = {}
    for k, mi in enumerate(parts):
        width = int(mask[mi].sum(1).max().item())
        cols = slice(0, width)
        ids = torch.cat([rollout.queries[mi], rollout.responses[mi, cols]], 1)
        att = torch.cat([rollout.query_mask[mi], torch.ones_like(rollout.responses[mi, cols])], 1)
        last_part = accelerator is None or k == len(parts) - 1
        with nullcontext() if last_part else accelerator.no_sync(policy):
            logits, new_values = response_logits_and_values(policy, ids, att, ctx, cfg.temperature)
            new_logprobs = logprobs_from_logits(logits, rollout.responses[mi, cols])
            if cfg.ent_coef:
                entropy = entropy_from_logits(logits)
            else:
                with torch.no_grad():
                    entropy = entropy_from_logits(logits.detach())
            loss, part_stats = ppo_loss(
                new_logprobs, rollout.logprobs[mi, cols], advantages[mi, cols], new_values.float(),
                rollout.values[mi, cols], returns[mi, cols], mask[mi, cols], cfg, entropy,
            )
            weight = (mask[mi].sum() / n_tokens).item()
            if accelerator is not None:
                accelerator.backward(loss * weight)
            else:
                (loss * weight).backward()
        for key, value in part_stats.items():
            stats[key] = stats.get(key, 0.0) + weight * value
    params = [p for p in policy.parameters() if p.requires_grad]
    if accelerator is not None:
        grad_norm = accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
    else:
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
    optimizer.step()
    stats["losses/grad_norm"] = float(grad_norm)
    return stats

# ----------------------------------------------------------------------------- training loop


def train(
    policy_dir: str,
    prompts: list[str],
    reward_fn: Callable[..., list[dict]],
    cfg: PPOConfig,
    rubrics: list[Any] | None = None,
    log_fn: Callable[[dict[str, float], int], None] | None = None,
    resume: bool = True,
    reward_cfg: ProcessRewardConfig | None = None,
) -> dict[str, Any]:
    """Train a policy with PPO on the R2-Write reward.

    Args:
        policy_dir: Directory of the starting policy (e.g. the SFT model); it is also the
            frozen KL reference.
        prompts: Training prompts; each step takes ``cfg.prompts_per_step`` of them from a
            seeded shuffle (epoch after epoch), each sampled ``rollouts_per_prompt`` times.
        reward_fn: ``reward_fn(prompts, completions, rubrics=..., truncated=...) -> list[dict]`` with
            ``outcome`` and ``step_scores`` per completion, e.g.
            :func:`r2_write.rewards.process.process_reward_fn`.
        cfg: PPO hyperparameters.
        rubrics: One rubric per prompt (passed through to ``reward_fn``), or None.
        log_fn: Called as ``log_fn(metrics, step)`` after every step (main process only).
        resume: Continue from the latest ``output_dir/checkpoint-<step>`` if there is one.
        reward_cfg: Score-to-reward settings for token placement; its ``process_weight`` is
            replaced by ``cfg.process_weight`` (the one lambda).

    Returns:
        ``{"history": [metrics per step, from step 1], "final_dir": "<output_dir>/final"}``.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    if not prompts:
        raise ValueError("train() needs at least one prompt")
    if rubrics is not None and len(rubrics) != len(prompts):
        raise ValueError(f"{len(rubrics)} rubrics for {len(prompts)} prompts")
    reward_cfg = replace(reward_cfg or ProcessRewardConfig(), process_weight=cfg.process_weight)
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision)
    n_proc, rank = accelerator.num_processes, accelerator.process_index
    if cfg.batch_size % n_proc or cfg.mini_batch_size % n_proc:
        raise ValueError(f"batch_size and mini_batch_size must be multiples of the {n_proc} processes")

    # --- models, optimizer, resume state
    output_dir = Path(cfg.output_dir)
    checkpoint = latest_checkpoint(output_dir) if resume else None
    set_seed(cfg.seed)  # the value head's initialisation
    tokenizer, policy, optimizer = _load_policy(checkpoint or Path(policy_dir), cfg)
    ref_model = load_causal_lm(policy_dir).eval().requires_grad_(False)
    start_step, history = 0, []
    if checkpoint is not None:
        start_step, history = _restore_state(checkpoint, policy, optimizer)
        logger.info("resuming PPO from %s (step %d)", checkpoint, start_step)
    policy, optimizer = accelerator.prepare(policy, optimizer)
    ref_model.to(accelerator.device)
    unwrapped = accelerator.unwrap_model(policy)
    sampler = VLLMSampler(unwrapped.lm, accelerator, tokenizer, cfg) if cfg.use_vllm else None

    # --- PPO steps
    for step in range(start_step + 1, cfg.total_steps + 1):
        set_seed(cfg.seed + step, device_specific=True)
        rows = [i for i in step_prompt_indices(len(prompts), step, cfg) for _ in range(cfg.rollouts_per_prompt)]
        rows = rows[rank::n_proc]
        batch_prompts = [prompts[i] for i in rows]
        batch_rubrics = [rubrics[i] for i in rows] if rubrics is not None else None

        t0 = time.perf_counter()
        with accelerator.autocast():  # old logprobs at the precision the update will use
            ro = rollout(unwrapped, ref_model, tokenizer, batch_prompts, cfg, sampler=sampler)
        t1 = time.perf_counter()
        results = reward_fn(batch_prompts, ro.completions, rubrics=batch_rubrics, truncated=ro.truncated.tolist())
        scores = token_scores(ro, results, reward_cfg)
        t2 = time.perf_counter()
        rewards, kl = compute_rewards(scores, ro.logprobs, ro.ref_logprobs, ro.response_mask, cfg.kl_coef)
        advantages, returns = compute_gae(rewards, ro.values, ro.response_mask, cfg.gamma, cfg.lam)
        update_stats = ppo_update(policy, optimizer, ro, advantages, returns, cfg, accelerator)
        if sampler is not None:
            sampler.sync_weights()  # the next rollout samples from the updated policy
        t3 = time.perf_counter()

        metrics = _step_metrics(ro, results, scores, rewards, kl, returns, reward_cfg, cfg)
        metrics.update(update_stats)
        metrics.update({"time/rollout": t1 - t0, "time/reward": t2 - t1, "time/update": t3 - t2})
        metrics = {k: _mean_over_processes(v, accelerator, accelerator.device) for k, v in metrics.items()}
        history.append(metrics)
        if log_fn is not None and accelerator.is_main_process:
            log_fn(metrics, step)
        logger.info("PPO step %d/%d: reward/mean=%.4f objective/kl=%.4f", step, cfg.total_steps,
                    metrics["reward/mean"], metrics["objective/kl"])
        if cfg.save_every and step % cfg.save_every == 0:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                save_checkpoint(output_dir / f"checkpoint-{step}", unwrapped, tokenizer, optimizer, step, history)
                prune_checkpoints(output_dir, cfg.keep_checkpoints)

    # --- final model
    final_dir = output_dir / "final"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _save_model(final_dir, unwrapped, tokenizer)
        if cfg.cleanup_checkpoints:
            remove_checkpoints(output_dir)
    return {"history": history, "final_dir": str(final_dir)}


def step_prompt_indices(n_prompts: int, step: int, cfg: PPOConfig) -> list[int]:
    """Indices of the prompts used at ``step`` (1-based): a stream of seeded shuffles, epoch after epoch.

    Depends only on ``(n_prompts, step, cfg.seed, cfg.prompts_per_step)``, so a resumed run
    sees the same prompts as an uninterrupted one.

    >>> cfg = PPOConfig(batch_size=2, mini_batch_size=2)
    >>> sorted(step_prompt_indices(4, 1, cfg) + step_prompt_indices(4, 2, cfg))
    [0, 1, 2, 3]
    """
    start = (step - 1) * cfg.prompts_per_step
    perms: dict[int, list[int]] = {}
    out = []
    for pos in range(start, start + cfg.prompts_per_step):
        epoch = pos // n_prompts
        if epoch not in perms:
            perms[epoch] = random.Random(cfg.seed + epoch).sample(range(n_prompts), n_prompts)
        out.append(perms[epoch][pos % n_prompts])
    return out


def _step_metrics(ro, results, scores, rewards, kl, returns, reward_cfg, cfg) -> dict[str, float]:
    """The per-step metrics (before averaging over processes).

    Outcome metrics average the judged completions only (NaN when none was judged);
    ``reward/format_violations`` counts the others, which carry ``-format_penalty``.
    """
    mask = ro.response_mask
    judged = [r for r in results if r["outcome"] is not None]
    n_steps = sum(r["n_steps"] for r in results)
    var_returns = masked_var(returns, mask)
    explained_var = 1 - masked_var(returns - ro.values, mask) / var_returns if var_returns > 0 else torch.tensor(0.0)
    nan = float("nan")
    return {
        "reward/mean": scores.sum(1).mean().item(),
        "reward/outcome": sum(normalise_score(r["outcome"], reward_cfg) for r in judged) / len(judged) if judged else nan,
        "reward/outcome_score": sum(r["outcome"] for r in judged) / len(judged) if judged else nan,
        "reward/process": sum(r["process"] for r in results) / len(results),
        "reward/format_violations": float(len(results) - len(judged)),
        "reward/steps_improved_frac": sum(r["n_improved"] for r in results) / n_steps if n_steps else nan,
        "reward/redundant_frac": sum(r["n_redundant"] for r in results) / n_steps if n_steps else nan,
        "reward/steps_worsened_frac": sum(r["n_worsened"] for r in results) / n_steps if n_steps else nan,
        "response/length_tokens": mask.sum(1).mean().item(),
        "response/reflections": sum(r["n_reflections"] for r in results) / len(results),
        "response/steps": n_steps / len(results),
        "response/truncated_frac": ro.truncated.float().mean().item(),
        "objective/kl": kl.sum(1).mean().item(),
        "objective/non_score_reward": (-cfg.kl_coef * kl).sum(1).mean().item(),
        "objective/rlhf_reward": rewards.sum(1).mean().item(),
        "losses/explained_variance": float(explained_var),
    }


def _mean_over_processes(value: float, accelerator, device) -> float:
    if accelerator is None or accelerator.num_processes == 1:
        return float(value)
    return accelerator.reduce(torch.tensor(float(value), device=device), reduction="mean").item()


# ----------------------------------------------------------------------------- loading and saving


def load_causal_lm(path: str | Path):
    """Load a causal LM in float32 from a local directory.

    A stale ``quantization_config`` of the GGUF conversion is dropped (the weights are plain
    safetensors), so the model can be saved again with ``save_pretrained``.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path)
    qc = getattr(config, "quantization_config", None)
    method = qc.get("quant_method") if isinstance(qc, dict) else getattr(qc, "quant_method", None)
    if qc is not None and str(getattr(method, "value", method)) == "gguf":
        del config.quantization_config
    return AutoModelForCausalLM.from_pretrained(path, config=config, dtype=torch.float32)


def _load_policy(source: Path, cfg: PPOConfig):
    """Tokenizer, policy with value head, and AdamW with separate actor and critic learning rates."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    policy = PolicyWithValue(load_causal_lm(source))
    if cfg.gradient_checkpointing:
        if hasattr(policy.lm, "activation_checkpointing_enable"):  # transformers >= 5.2x name
            policy.lm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            policy.lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    optimizer = torch.optim.AdamW(
        [
            {"params": list(policy.lm.parameters()), "lr": cfg.learning_rate},
            {"params": list(policy.value_head.parameters()), "lr": cfg.critic_learning_rate},
        ]
    )
    return tokenizer, policy, optimizer


def _restore_state(checkpoint: Path, policy: PolicyWithValue, optimizer) -> tuple[int, list[dict]]:
    """Load the value head and optimizer state of a checkpoint; return its step and history."""
    policy.value_head.load_state_dict(torch.load(checkpoint / VALUE_HEAD_FILE, map_location="cpu"))
    optimizer.load_state_dict(torch.load(checkpoint / OPTIMIZER_FILE, map_location="cpu"))
    state = json.loads((checkpoint / STATE_FILE).read_text())
    return state["step"], state["history"]


def save_checkpoint(
    path: Path, policy: PolicyWithValue, tokenizer, optimizer, step: int, history: list[dict]
) -> None:
    """Write policy, tokenizer, value head, optimizer and step/history; atomic via a temporary directory."""
    tmp = path.with_name(path.name + ".tmp")
    _save_model(tmp, policy, tokenizer)
    torch.save(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
    (tmp / STATE_FILE).write_text(json.dumps({"step": step, "history": history}, indent=1))
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)


def _save_model(path: Path, policy: PolicyWithValue, tokenizer) -> None:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    policy.lm.save_pretrained(path)
    tokenizer.save_pretrained(path)
    torch.save(policy.value_head.state_dict(), path / VALUE_HEAD_FILE)


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _eos_ids(tokenizer, lm) -> list[int]:
    ids = {tokenizer.eos_token_id}
    gen_eos = getattr(getattr(lm, "generation_config", None), "eos_token_id", None)
    ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
    return sorted(i for i in ids if i is not None)


def _generation_config(cfg: PPOConfig, pad: int, eos_ids: list[int]):
    """Plain sampling from the policy (no top-k, no repetition penalty), so logprobs match."""
    from transformers import GenerationConfig

    return GenerationConfig(
        do_sample=True,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        top_k=0,
        max_new_tokens=cfg.max_new_tokens,
        pad_token_id=pad,
        eos_token_id=eos_ids,
    )
