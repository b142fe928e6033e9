"""PPO with token-level process rewards, one testable function per phase.

One PPO step reads top to bottom like the algorithm (old TRL ``PPOTrainer.step`` and
cleanrl ``ppo.py``)::

    rollout        sample responses; old logprobs, reference logprobs, values, masks
    reward_fn      judge outcome + reflection->revision steps     (r2_write.rewards.process)
    token_scores   outcome on the last token, lambda * step reward on each step's end token
    compute_rewards  r_t = score_t - kl_coef * (logprob_t - ref_logprob_t)
    compute_gae      advantages, returns = advantages + values
    ppo_update       epochs x mini-batches (train_minibatch) of ppo_loss: clipped policy + value loss
    critic_update    (separate critic only) epochs x mini-batches of the clipped value loss

:func:`train` loops these steps, logs metrics, checkpoints and resumes. Tensors are
``[batch, response_tokens]``; ``mask`` is 1 on response tokens up to and including the
first EOS, 0 on the padding after it.

The critic (``PPOConfig.critic``) is either ``shared``: a value head on the policy's last
hidden state (:class:`PolicyWithValue`, one model, one optimizer, one loss; fits a CPU), or
``separate``, as in veRL: the actor is the causal LM alone (:class:`Actor`, policy loss only)
and the critic a second copy of the starting backbone with its own value head
(:class:`Critic`), optimizer, gradient clipping and update (:func:`critic_update`). During
the first ``critic_warmup_steps`` steps only the critic learns (the actor is frozen).
Checkpoints and the final model hold the critic in ``critic/``; the policy directory stays a
plain Hugging Face causal LM.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from r2_write.progress import Progress
from r2_write.prompts.policy import policy_messages
from r2_write.rewards.process import ProcessRewardConfig, normalise_score, token_rewards
from r2_write.rl.ppo_config import PPOConfig
from r2_write.rl.utils import entropy_from_logits, logprobs_from_logits, masked_mean, masked_whiten
from r2_write.training.checkpoints import STATE_FILE, latest_checkpoint, prune_checkpoints, remove_checkpoints

logger = logging.getLogger(__name__)

VALUE_HEAD_FILE, OPTIMIZER_FILE = "value_head.pt", "optimizer.pt"
CRITIC_DIR = "critic"  # the separate critic's subdirectory of checkpoints and of final/


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
            value_head = new_value_head(lm.config)
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


class Actor(nn.Module):
    """The causal LM alone: the actor when the critic is separate (``critic: separate``).

    Same interface as :class:`PolicyWithValue` without the value head; the values come from
    the :class:`Critic`, and :func:`ppo_loss` then holds the policy loss only.

    Args:
        lm: A transformers causal LM.
    """

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int = 0
    ) -> tuple[torch.Tensor, None]:
        """Return ``(logits [B, T, V], None)`` for the last ``logits_to_keep`` positions (0 = all)."""
        out = self.lm(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids(attention_mask),
            logits_to_keep=logits_to_keep,
            use_cache=False,
        )
        return out.logits, None


class Critic(nn.Module):
    """veRL's separate critic: a transformer backbone with a scalar value head on its last hidden state.

    The backbone is a second copy of the starting checkpoint without its LM head
    (:func:`load_backbone`), trained by its own optimizer (:func:`critic_update`).

    Args:
        backbone: A transformers base model (``AutoModel``: hidden states, no logits).
        value_head: An existing ``nn.Linear(hidden, 1)``; a fresh small one when None.
    """

    def __init__(self, backbone: nn.Module, value_head: nn.Linear | None = None):
        super().__init__()
        self.backbone = backbone
        if value_head is None:
            value_head = new_value_head(backbone.config)
        self.value_head = value_head.to(next(backbone.parameters()).device)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int = 0) -> torch.Tensor:
        """Return ``values [B, T]`` for the last ``logits_to_keep`` positions (0 = all)."""
        hidden = self.backbone(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids(attention_mask),
            use_cache=False,
        ).last_hidden_state
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        return self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1)


def new_value_head(config) -> nn.Linear:
    """A fresh ``nn.Linear(hidden, 1)`` with small weights and zero bias (values start near 0)."""
    hidden = config.get_text_config().hidden_size
    value_head = nn.Linear(hidden, 1)
    nn.init.normal_(value_head.weight, std=1.0 / (hidden + 1) ** 0.5)
    nn.init.zeros_(value_head.bias)
    return value_head


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, as ``generate`` uses them (so scores match sampling)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def response_logits_and_values(
    policy: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, context_length: int, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Policy logits (divided by ``temperature``) and values at the positions predicting each response token.

    The values are None for an :class:`Actor` (the critic is separate: :func:`response_values`).
    """
    n = input_ids.shape[1] - context_length
    logits, values = policy(input_ids, attention_mask, logits_to_keep=n + 1)
    return logits[:, :-1] / temperature, values[:, :-1] if values is not None else None


def response_values(
    critic: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, context_length: int
) -> torch.Tensor:
    """The separate critic's values at the positions predicting each response token."""
    n = input_ids.shape[1] - context_length
    return critic(input_ids, attention_mask, logits_to_keep=n + 1)[:, :-1]


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
        text = tokenizer.apply_chat_template(policy_messages(prompt), tokenize=False, add_generation_prompt=True)
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
    policy: PolicyWithValue | Actor, ref_model: nn.Module, tokenizer, prompts: list[str], cfg: PPOConfig,
    sampler: "VLLMSampler | None" = None, critic: Critic | None = None,
) -> Rollout:
    """Sample one response per prompt and score it with the policy, the critic and the reference.

    ``generate`` samples with :func:`_generation_config` alone: nothing is taken from the
    checkpoint's ``generation_config.json`` (a shipped ``repetition_penalty`` or ``top_k``
    would sample from another distribution than the logprobs score).

    Args:
        policy: The (unwrapped) policy with value head, or the actor alone when ``critic`` is given.
        ref_model: The frozen reference causal LM.
        tokenizer: The policy's tokenizer (its chat template formats the prompts).
        prompts: User prompts, one response each (repeat a prompt for several samples).
        cfg: Sampling (temperature, top_k, top_p, ..., max_new_tokens) and batching settings.
        sampler: Samples the responses instead of ``policy.lm.generate`` (vLLM); the
            logprobs are computed by the policy either way.
        critic: The (unwrapped) separate critic, which gives the values; None = the policy's value head.

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
        with _without_checkpoint_generation_defaults(policy.lm), _root_unsharded(policy):
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
    # 2. score them: old logprobs (policy), values (value head or critic), reference logprobs
    input_ids = torch.cat([queries, responses], 1)
    attention_mask = torch.cat([query_mask, torch.ones_like(responses)], 1)
    logprobs, values, ref_logprobs = [], [], []
    if critic is not None:
        critic.eval()
    for s in range(0, len(prompts), cfg.micro_batch_size):
        ids, att = input_ids[s : s + cfg.micro_batch_size], attention_mask[s : s + cfg.micro_batch_size]
        logits, v = response_logits_and_values(policy, ids, att, queries.shape[1], cfg.temperature)
        if critic is not None:
            v = response_values(critic, ids, att, queries.shape[1])
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
    with training (``vllm_gpu_memory_utilization``), samples with the config's temperature,
    top_k, top_p, min_p and repetition_penalty (all off by default: plain sampling; vLLM's
    ``SamplingParams`` are built from these values only) and gets the policy's weights after
    every update (:meth:`sync_weights`). It returns token ids only: the logprobs PPO needs are
    recomputed by the policy, as with ``generate``.
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
            top_k=cfg.top_k, top_p=cfg.top_p, min_p=cfg.min_p or 0.0, repetition_penalty=cfg.repetition_penalty,
            max_completion_length=cfg.max_new_tokens,
        )

    def __call__(self, queries: torch.Tensor, query_mask: torch.Tensor) -> list[list[int]]:
        """Completion token ids for each left-padded query row (padding removed first)."""
        prompts = [row[mask.bool()].tolist() for row, mask in zip(queries.cpu(), query_mask.cpu())]
        _, completion_ids, _, _ = self.generation.generate(prompts, images=None, num_generations=1)
        return completion_ids

    def sync_weights(self) -> None:
        self.generation.sync_weights()


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
    ``new_values`` None (an :class:`Actor`: the separate critic learns from
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
        policy: The policy with value head, or the :class:`Actor` of a separate critic (policy
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
        advantages = masked_whiten(advantages, mask, all_reduce=_sum_over_processes(accelerator))
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
        logits, new_values = response_logits_and_values(policy, ids, att, rollout.context_length, cfg.temperature)
        new_logprobs = logprobs_from_logits(logits, rollout.responses[mi, cols])
        if cfg.ent_coef:
            entropy = entropy_from_logits(logits)
        else:
            with torch.no_grad():
                entropy = entropy_from_logits(logits.detach())
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
        critic: The :class:`Critic` (possibly wrapped by accelerate).
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
    all_reduce = _sum_over_processes(accelerator)
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
    weights_digest: bool = False,
) -> dict[str, Any]:
    """Train a policy with PPO on the R2-Write reward.

    Under ``accelerate launch`` (several processes; :mod:`r2_write.training.launch` starts them)
    each process samples and judges its share of every step's rollouts (``batch_size`` and
    ``mini_batch_size`` count all processes), data parallelism averages the gradients, and
    advantage whitening, loss weighting and the metrics use sums over the processes: the run
    computes what one process would on the global batch. The main process writes the checkpoints
    and the final model. Under FSDP2 (``conf/accelerate/fsdp.yaml``) the actor and critic are
    sharded by ``accelerator.prepare`` and the reference by :func:`_shard_frozen`; checkpoints
    hold full state dicts gathered by every process (:func:`_full_states`).

    Args:
        policy_dir: Directory of the starting policy (e.g. the SFT model); it is also the
            frozen KL reference.
        prompts: Training prompts; each step takes ``cfg.prompts_per_step`` of them from a
            seeded shuffle (epoch after epoch), each sampled ``rollouts_per_prompt`` times.
        reward_fn: ``reward_fn(prompts, completions, rubrics=..., truncated=...) -> list[dict]`` with
            ``outcome`` (None if malformed), ``rewards`` and step counts per completion, e.g.
            :func:`r2_write.rewards.process.process_reward_fn`.
        cfg: PPO hyperparameters.
        rubrics: One rubric per prompt (passed through to ``reward_fn``), or None.
        log_fn: Called as ``log_fn(metrics, step)`` after every step (main process only).
        resume: Continue from the latest ``output_dir/checkpoint-<step>`` if there is one.
        reward_cfg: Score-to-reward settings for token placement (lambda is ``cfg.process_weight``).
        weights_digest: Also return ``weights_digest``, a SHA-256 of this process's final policy
            (and critic) parameters: equal on every process of a data-parallel run.

    Returns:
        ``{"history": [metrics per step, from step 1], "final_dir": "<output_dir>/final"}``;
        with ``critic: separate`` the critic is saved in ``final/critic/``.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    if not prompts:
        raise ValueError("train() needs at least one prompt")
    if rubrics is not None and len(rubrics) != len(prompts):
        raise ValueError(f"{len(rubrics)} rubrics for {len(prompts)} prompts")
    reward_cfg = reward_cfg or ProcessRewardConfig()
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision)
    n_proc, rank = accelerator.num_processes, accelerator.process_index
    if accelerator.distributed_type == "DEEPSPEED":
        raise ValueError("PPO does not run under DeepSpeed (its engine steps inside backward; PPO accumulates "
                         "micro-batches itself and steps two models): launch it with conf/accelerate/fsdp.yaml "
                         "(FSDP2) or plain data parallelism; zero3.yaml is for SFT and GRPO")
    fsdp = accelerator.distributed_type == "FSDP"
    if fsdp and getattr(accelerator.state.fsdp_plugin, "fsdp_version", 1) != 2:
        raise ValueError("PPO shards with FSDP2 only (fsdp_version: 2, as in conf/accelerate/fsdp.yaml)")
    if cfg.batch_size % n_proc or cfg.mini_batch_size % n_proc:
        raise ValueError(f"batch_size and mini_batch_size must be multiples of the {n_proc} processes")
    if cfg.sampling_restrictions():
        logger.warning(
            "PPO rollouts sample with %s: the tokens are drawn from a truncated or penalised distribution but "
            "scored with the policy's full one, so the PPO ratios and the KL are off-policy; the defaults "
            "(top_k=0, top_p=1, min_p=None, repetition_penalty=1) sample the policy itself",
            ", ".join(cfg.sampling_restrictions()),
        )

    # --- models, optimizers, resume state
    output_dir = Path(cfg.output_dir)
    checkpoint = latest_checkpoint(output_dir) if resume else None
    set_seed(cfg.seed)  # the value head's initialisation
    tokenizer, policy, optimizer = _load_policy(checkpoint or Path(policy_dir), cfg)
    critic, critic_optimizer = None, None
    if cfg.critic == "separate":
        critic, critic_optimizer = _load_critic(checkpoint or Path(policy_dir), cfg)
    ref_model = load_causal_lm(policy_dir).eval().requires_grad_(False)
    start_step, history = 0, []
    if checkpoint is not None:  # under FSDP the optimizer states load once the models are sharded (below)
        start_step, history = _restore_state(checkpoint, policy, optimizer, critic_optimizer, sharded=fsdp)
        logger.info("resuming PPO from %s (step %d)", checkpoint, start_step)
    policy, optimizer = accelerator.prepare(policy, optimizer)
    unwrapped, unwrapped_critic = accelerator.unwrap_model(policy), None
    if critic is not None:
        critic, critic_optimizer = accelerator.prepare(critic, critic_optimizer)
        unwrapped_critic = accelerator.unwrap_model(critic)
    if fsdp:  # the frozen reference is sharded like the policy (each decoder layer gathered only while it runs)
        ref_model = _shard_frozen(ref_model, accelerator)
        if checkpoint is not None:
            _load_full_optimizer_states(checkpoint, policy, optimizer, critic, critic_optimizer)
    else:
        ref_model.to(accelerator.device)
    sampler = VLLMSampler(unwrapped.lm, accelerator, tokenizer, cfg) if cfg.use_vllm else None

    # --- PPO steps (a bar on a terminal, a progress line in logs every R2_PROGRESS_LOG_S seconds)
    progress = Progress(cfg.total_steps - start_step, "PPO steps", logger,
                        bar=None if accelerator.is_main_process else False)
    for step in range(start_step + 1, cfg.total_steps + 1):
        set_seed(cfg.seed + step, device_specific=True)
        rows = [i for i in step_prompt_indices(len(prompts), step, cfg) for _ in range(cfg.rollouts_per_prompt)]
        rows = rows[rank::n_proc]
        batch_prompts = [prompts[i] for i in rows]
        batch_rubrics = [rubrics[i] for i in rows] if rubrics is not None else None
        if critic is not None:  # critic warm-up (veRL critic_warmup): a frozen actor is not updated by ppo_update
            unwrapped.requires_grad_(step > cfg.critic_warmup_steps)

        t0 = time.perf_counter()
        with accelerator.autocast():  # old logprobs at the precision the update will use
            ro = rollout(unwrapped, ref_model, tokenizer, batch_prompts, cfg, sampler=sampler, critic=unwrapped_critic)
        t1 = time.perf_counter()
        results = reward_fn(batch_prompts, ro.completions, rubrics=batch_rubrics, truncated=ro.truncated.tolist())
        scores = token_scores(ro, results, reward_cfg, cfg.process_weight)
        t2 = time.perf_counter()
        rewards, kl = compute_rewards(scores, ro.logprobs, ro.ref_logprobs, ro.response_mask, cfg.kl_coef)
        advantages, returns = compute_gae(rewards, ro.values, ro.response_mask, cfg.gamma, cfg.lam)
        update_stats = ppo_update(policy, optimizer, ro, advantages, returns, cfg, accelerator)
        if sampler is not None:
            sampler.sync_weights()  # the next rollout samples from the updated policy
        t3 = time.perf_counter()

        # global-batch metrics: sums over the processes (the update stats are global already)
        metrics = _step_metrics(ro, results, scores, rewards, kl, returns, reward_cfg, cfg,
                                all_reduce=_sum_over_processes(accelerator))
        metrics.update(update_stats)
        timings = {"time/rollout": t1 - t0, "time/reward": t2 - t1, "time/update": t3 - t2}
        if critic is not None:  # the separate critic learns from the same batch (veRL's update_critic)
            metrics.update(critic_update(critic, critic_optimizer, ro, returns, cfg, accelerator))
            timings["time/critic_update"] = time.perf_counter() - t3
        metrics.update({k: _mean_over_processes(v, accelerator, accelerator.device) for k, v in timings.items()})
        history.append(metrics)
        if log_fn is not None and accelerator.is_main_process:
            log_fn(metrics, step)
        logger.info("PPO step %d/%d: reward/mean=%.4f objective/kl=%.4f", step, cfg.total_steps,
                    metrics["reward/mean"], metrics["objective/kl"])
        progress.update()
        if cfg.save_every and step % cfg.save_every == 0:
            accelerator.wait_for_everyone()
            states = _full_states(accelerator, policy, optimizer, critic, critic_optimizer)  # FSDP: a collective
            if accelerator.is_main_process:
                save_checkpoint(output_dir / f"checkpoint-{step}", unwrapped, tokenizer, optimizer, step, history,
                                critic=unwrapped_critic, critic_optimizer=critic_optimizer, states=states)
                prune_checkpoints(output_dir, cfg.keep_checkpoints)

    progress.close()

    # --- final model
    final_dir = output_dir / "final"
    accelerator.wait_for_everyone()
    states = _full_states(accelerator, policy, None, critic, None)
    if accelerator.is_main_process:
        _save_model(final_dir, unwrapped, tokenizer, state_dict=states and states["policy"])
        if unwrapped_critic is not None:
            _save_critic(final_dir / CRITIC_DIR, unwrapped_critic, tokenizer, state_dict=states and states["critic"])
        if cfg.cleanup_checkpoints:
            remove_checkpoints(output_dir)
    out = {"history": history, "final_dir": str(final_dir)}
    if weights_digest and not fsdp:  # FSDP: each process holds other shards by design
        out["weights_digest"] = parameters_digest(unwrapped, unwrapped_critic)
    accelerator.wait_for_everyone()
    return out


def parameters_digest(*models: nn.Module | None) -> str:
    """SHA-256 over the names and bytes of every parameter and buffer of ``models`` (None skipped)."""
    import hashlib

    digest = hashlib.sha256()
    for model in models:
        if model is None:
            continue
        for name, tensor in model.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


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


def _step_metrics(ro, results, scores, rewards, kl, returns, reward_cfg, cfg, all_reduce=None) -> dict[str, float]:
    """The per-step metrics of the global batch (every process's rows).

    Each metric is a ratio of sums (rows, judged completions, steps, response tokens) and the
    sums are added over the processes (``all_reduce``) before dividing, so the metrics equal
    those of one process holding the whole batch: a mean of per-process means would weigh a
    process's 1 judged completion like another's 3, and halve counts such as
    ``reward/format_violations``. Outcome metrics average the judged completions only (NaN when
    none was judged); ``reward/format_violations`` counts the others, which carry
    ``-format_penalty``. The variances of ``losses/explained_variance`` are two-pass (global mean first).
    """
    mask = ro.response_mask
    judged = [r for r in results if r["outcome"] is not None]
    total = _summed({
        "rows": len(results),
        "judged": len(judged),
        "steps": sum(r["n_steps"] for r in results),
        "reward": scores.sum(),
        "outcome": sum(normalise_score(r["outcome"], reward_cfg) for r in judged),
        "outcome_score": sum(r["outcome"] for r in judged),
        "process": sum(r["process"] for r in results),
        "improved": sum(r["n_improved"] for r in results),
        "redundant": sum(r["n_redundant"] for r in results),
        "worsened": sum(r["n_worsened"] for r in results),
        "reflections": sum(r["n_reflections"] for r in results),
        "tokens": mask.sum(),
        "truncated": ro.truncated.sum(),
        "kl": kl.sum(),
        "rlhf": rewards.sum(),
        "returns": (returns * mask).sum(),
        "residuals": ((returns - ro.values) * mask).sum(),
    }, all_reduce, mask.device)
    tokens = total["tokens"]
    mean_returns, mean_residuals = total["returns"] / max(tokens, 1.0), total["residuals"] / max(tokens, 1.0)
    m = mask.double()
    squares = _summed({
        "returns": ((returns.double() - mean_returns) ** 2 * m).sum(),
        "residuals": (((returns - ro.values).double() - mean_residuals) ** 2 * m).sum(),
    }, all_reduce, mask.device)
    var_returns = squares["returns"] / (tokens - 1) if tokens >= 2 else 0.0
    var_residuals = squares["residuals"] / (tokens - 1) if tokens >= 2 else 0.0
    rows, judged_n, steps = total["rows"], total["judged"], total["steps"]
    nan = float("nan")
    return {
        "reward/mean": total["reward"] / rows,
        "reward/outcome": total["outcome"] / judged_n if judged_n else nan,
        "reward/outcome_score": total["outcome_score"] / judged_n if judged_n else nan,
        "reward/process": total["process"] / rows,
        "reward/format_violations": rows - judged_n,
        "reward/steps_improved_frac": total["improved"] / steps if steps else nan,
        "reward/redundant_frac": total["redundant"] / steps if steps else nan,
        "reward/steps_worsened_frac": total["worsened"] / steps if steps else nan,
        "response/length_tokens": tokens / rows,
        "response/reflections": total["reflections"] / rows,
        "response/steps": steps / rows,
        "response/truncated_frac": total["truncated"] / rows,
        "objective/kl": total["kl"] / rows,
        "objective/non_score_reward": -cfg.kl_coef * total["kl"] / rows,
        "objective/rlhf_reward": total["rlhf"] / rows,
        "losses/explained_variance": 1 - var_residuals / var_returns if var_returns > 0 else 0.0,
    }


def _summed(values: dict[str, Any], all_reduce, device) -> dict[str, float]:
    """``values`` (numbers or 0-d tensors) as floats, summed over the processes when ``all_reduce`` is given (one call)."""
    vector = torch.tensor([float(v) for v in values.values()], dtype=torch.float64, device=device)
    if all_reduce is not None:
        vector = all_reduce(vector)
    return dict(zip(values, vector.tolist()))


def _sum_over_processes(accelerator) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """A function summing a tensor over the data-parallel processes; None for a single process (nothing to sum)."""
    if accelerator is None or accelerator.num_processes == 1:
        return None
    return lambda tensor: accelerator.reduce(tensor, reduction="sum")


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
    from transformers import AutoModelForCausalLM

    return _load_pretrained(AutoModelForCausalLM, path)


def load_backbone(path: str | Path):
    """Load the transformer backbone of a causal LM directory (``AutoModel``: no LM head) in float32.

    The separate critic starts from it; a critic directory (``critic/``) loads the same way.
    From a causal LM directory transformers reports ``lm_head.weight`` as unexpected: the
    head is left out on purpose.
    """
    from transformers import AutoModel

    return _load_pretrained(AutoModel, path)


def _load_pretrained(auto_cls, path: str | Path):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    qc = getattr(config, "quantization_config", None)
    method = qc.get("quant_method") if isinstance(qc, dict) else getattr(qc, "quant_method", None)
    if qc is not None and str(getattr(method, "value", method)) == "gguf":
        del config.quantization_config
    return auto_cls.from_pretrained(path, config=config, dtype=torch.float32)


def _load_policy(source: Path, cfg: PPOConfig):
    """Tokenizer, policy and its AdamW.

    ``critic: shared``: the policy with value head, the optimizer with separate actor and
    critic learning rates. ``critic: separate``: the :class:`Actor` alone at ``learning_rate``
    (the critic has its own, :func:`_load_critic`).
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    lm = load_causal_lm(source)
    if cfg.gradient_checkpointing:
        _enable_gradient_checkpointing(lm)
    if cfg.critic == "separate":
        return tokenizer, Actor(lm), torch.optim.AdamW(lm.parameters(), lr=cfg.learning_rate)
    policy = PolicyWithValue(lm)
    optimizer = torch.optim.AdamW(
        [
            {"params": list(policy.lm.parameters()), "lr": cfg.learning_rate},
            {"params": list(policy.value_head.parameters()), "lr": cfg.critic_learning_rate},
        ]
    )
    return tokenizer, policy, optimizer


def _load_critic(source: Path, cfg: PPOConfig) -> tuple[Critic, torch.optim.Optimizer]:
    """The separate critic and its AdamW at ``critic_learning_rate``.

    ``source`` is a checkpoint or the starting policy directory. Its ``critic/`` (backbone and
    value head, as written by :func:`_save_critic`) is loaded when present: a checkpoint always
    has one, and a finished run's ``final/`` brings its trained critic along. Otherwise the
    critic is the policy's backbone with a fresh value head.
    """
    critic_dir = source / CRITIC_DIR
    if critic_dir.is_dir():
        critic = Critic(load_backbone(critic_dir))
        critic.value_head.load_state_dict(torch.load(critic_dir / VALUE_HEAD_FILE, map_location="cpu"))
    elif (source / STATE_FILE).exists():
        raise ValueError(f"checkpoint {source} has no {CRITIC_DIR}/: it was written with critic: shared")
    else:
        critic = Critic(load_backbone(source))
    if cfg.gradient_checkpointing:
        _enable_gradient_checkpointing(critic.backbone)
    return critic, torch.optim.AdamW(critic.parameters(), lr=cfg.critic_learning_rate)


def _enable_gradient_checkpointing(model: nn.Module) -> None:
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def _restore_state(
    checkpoint: Path, policy: PolicyWithValue | Actor, optimizer, critic_optimizer=None, sharded: bool = False
) -> tuple[int, list[dict]]:
    """Load the value head and optimizer states of a checkpoint; return its step and history.

    The separate critic's weights were loaded from the checkpoint by :func:`_load_critic`;
    ``critic_optimizer`` gets its state here. ``sharded`` (FSDP): the optimizer states are
    left to :func:`_load_full_optimizer_states` once the models are sharded; a checkpoint keeps
    its optimizer states in the layout of the run that wrote it (``optimizer_format``:
    ``local`` for one process or data parallelism, ``full`` for FSDP's gathered state dicts).
    """
    state = json.loads((checkpoint / STATE_FILE).read_text())
    written = state.get("optimizer_format", "local")
    if written != ("full" if sharded else "local"):
        raise ValueError(f"checkpoint {checkpoint} holds {written!r} optimizer states (written "
                         f"{'under FSDP' if written == 'full' else 'without FSDP'}): resume it with the same launch "
                         f"config_file, or start a fresh run")
    if isinstance(policy, PolicyWithValue):
        if not (checkpoint / VALUE_HEAD_FILE).exists():
            raise ValueError(f"checkpoint {checkpoint} has no {VALUE_HEAD_FILE}: it was written with critic: separate")
        policy.value_head.load_state_dict(torch.load(checkpoint / VALUE_HEAD_FILE, map_location="cpu"))
    if not sharded:
        optimizer.load_state_dict(torch.load(checkpoint / OPTIMIZER_FILE, map_location="cpu"))
        if critic_optimizer is not None:
            critic_optimizer.load_state_dict(torch.load(checkpoint / CRITIC_DIR / OPTIMIZER_FILE, map_location="cpu"))
    return state["step"], state["history"]


def _full_states(accelerator, policy, optimizer, critic=None, critic_optimizer=None) -> dict | None:
    """Under FSDP: the full state dicts of the sharded models and optimizers, gathered to CPU; None otherwise.

    A collective (every process calls it; the main process gets the tensors, the others empty
    dicts). Without FSDP every process holds whole modules and saving reads them directly.
    """
    if accelerator.distributed_type != "FSDP":
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    full = StateDictOptions(full_state_dict=True, cpu_offload=True)
    states = {"policy": get_model_state_dict(policy, options=full)}
    if optimizer is not None:
        states["optimizer"] = get_optimizer_state_dict(policy, optimizer, options=full)
    if critic is not None:
        states["critic"] = get_model_state_dict(critic, options=full)
        if critic_optimizer is not None:
            states["critic_optimizer"] = get_optimizer_state_dict(critic, critic_optimizer, options=full)
    return states


def _load_full_optimizer_states(checkpoint: Path, policy, optimizer, critic=None, critic_optimizer=None) -> None:
    """FSDP resume: every process reads the gathered optimizer states and keeps its shard of them."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    full = StateDictOptions(full_state_dict=True)
    set_optimizer_state_dict(policy, optimizer, torch.load(checkpoint / OPTIMIZER_FILE, map_location="cpu"), options=full)
    if critic is not None:
        set_optimizer_state_dict(critic, critic_optimizer,
                                 torch.load(checkpoint / CRITIC_DIR / OPTIMIZER_FILE, map_location="cpu"), options=full)


def _shard_frozen(model: nn.Module, accelerator) -> nn.Module:
    """FSDP2-shard a frozen model (the reference) as accelerate shards the trained ones: each decoder layer, then the root.

    ``accelerator.prepare`` wants an optimizer with every FSDP2 model, so the reference is
    sharded here with ``fully_shard`` and the plugin's mixed precision.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    plugin = accelerator.state.fsdp_plugin
    kwargs = {"reshard_after_forward": True, "mp_policy": plugin.mixed_precision_policy or MixedPrecisionPolicy()}
    layers = set(getattr(model, "_no_split_modules", None) or [])
    for module in model.modules():
        if type(module).__name__ in layers:
            fully_shard(module, **kwargs)
    fully_shard(model, **kwargs)
    return model.eval()


def save_checkpoint(
    path: Path, policy: PolicyWithValue | Actor, tokenizer, optimizer, step: int, history: list[dict],
    critic: Critic | None = None, critic_optimizer=None, states: dict | None = None,
) -> None:
    """Write policy, tokenizer, value head, optimizer and step/history; atomic via a temporary directory.

    A separate critic goes to ``critic/`` with its optimizer state. ``states`` (FSDP, from
    :func:`_full_states`): the gathered state dicts to write instead of the sharded modules'.
    """
    tmp = path.with_name(path.name + ".tmp")
    _save_model(tmp, policy, tokenizer, state_dict=states and states["policy"])
    torch.save(states["optimizer"] if states else optimizer.state_dict(), tmp / OPTIMIZER_FILE)
    if critic is not None:
        _save_critic(tmp / CRITIC_DIR, critic, tokenizer, state_dict=states and states["critic"])
        torch.save(states["critic_optimizer"] if states else critic_optimizer.state_dict(), tmp / CRITIC_DIR / OPTIMIZER_FILE)
    meta = {"step": step, "history": history, "optimizer_format": "full" if states else "local"}
    (tmp / STATE_FILE).write_text(json.dumps(meta, indent=1))
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)


def _save_model(path: Path, policy: PolicyWithValue | Actor, tokenizer, state_dict: dict | None = None) -> None:
    """The policy as a plain Hugging Face causal LM directory (plus ``value_head.pt`` when shared).

    ``state_dict``: the policy's full state dict (FSDP, gathered) to write instead of its modules'.
    """
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    if state_dict is None:
        policy.lm.save_pretrained(path)
    else:
        policy.lm.save_pretrained(path, state_dict=_prefixed(state_dict, "lm."))
    tokenizer.save_pretrained(path)
    if isinstance(policy, PolicyWithValue):
        head = policy.value_head.state_dict() if state_dict is None else _prefixed(state_dict, "value_head.")
        torch.save(head, path / VALUE_HEAD_FILE)


def _save_critic(path: Path, critic: Critic, tokenizer, state_dict: dict | None = None) -> None:
    """The separate critic: its backbone (``AutoModel`` directory), tokenizer and ``value_head.pt``."""
    path.mkdir(parents=True, exist_ok=True)
    if state_dict is None:
        critic.backbone.save_pretrained(path)
        head = critic.value_head.state_dict()
    else:
        critic.backbone.save_pretrained(path, state_dict=_prefixed(state_dict, "backbone."))
        head = _prefixed(state_dict, "value_head.")
    tokenizer.save_pretrained(path)
    torch.save(head, path / VALUE_HEAD_FILE)


def _prefixed(state_dict: dict, prefix: str) -> dict:
    """The entries of ``state_dict`` under ``prefix``, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _eos_ids(tokenizer, lm) -> list[int]:
    ids = {tokenizer.eos_token_id}
    gen_eos = getattr(getattr(lm, "generation_config", None), "eos_token_id", None)
    ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
    return sorted(i for i in ids if i is not None)


def _generation_config(cfg: PPOConfig, pad: int, eos_ids: list[int]):
    """The rollout's complete sampling settings: the config's values, every other logits processor off.

    transformers 5 ``generate(generation_config=...)`` fills each field left None from
    ``model.generation_config`` (the checkpoint's ``generation_config.json``), then from global
    defaults such as ``top_k=50`` and ``max_length=20`` (``_prepare_generation_config``). So
    every field that shapes the sampled distribution or the length is set here; the fields
    whose "off" is None (``min_p``, ``suppress_tokens``, ``bad_words_ids``, forced tokens,
    watermarking, ...) stay off because :func:`rollout` blanks the model's own config for the
    call (:func:`_without_checkpoint_generation_defaults`). With the defaults (temperature 1,
    top_k 0, top_p 1, no min_p, repetition_penalty 1) no logits processor runs: the tokens are
    sampled from exactly the distribution the logprobs score.
    """
    from transformers import GenerationConfig

    return GenerationConfig(
        do_sample=True,
        num_beams=1,
        num_return_sequences=1,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        top_p=cfg.top_p,
        min_p=cfg.min_p or None,
        typical_p=1.0,
        epsilon_cutoff=0.0,
        eta_cutoff=0.0,
        repetition_penalty=cfg.repetition_penalty,
        encoder_repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        encoder_no_repeat_ngram_size=0,
        renormalize_logits=False,
        remove_invalid_values=False,
        min_length=0,
        max_new_tokens=cfg.max_new_tokens,
        use_cache=True,
        return_dict_in_generate=False,
        pad_token_id=pad,
        eos_token_id=eos_ids,
    )


@contextmanager
def _root_unsharded(model: nn.Module):
    """Gather an FSDP2 root's own parameters (embeddings, LM head, value head) while ``model.lm.generate`` runs.

    ``generate`` calls the LM inside the root module, past the root's forward hook that would
    gather them; the decoder layers gather themselves. A no-op for an unsharded model.
    """
    if not hasattr(model, "unshard"):
        yield
        return
    model.unshard()
    try:
        yield
    finally:
        model.reshard()


@contextmanager
def _without_checkpoint_generation_defaults(lm: nn.Module):
    """Give ``lm`` a blank generation config while ``generate`` runs, so nothing is inherited from the checkpoint.

    ``generate`` fills every field of the passed config that is None from ``lm.generation_config``;
    with a blank one only transformers' global defaults remain, which are off for every field
    :func:`_generation_config` leaves None. The checkpoint's own config is put back afterwards
    (and saved with the model).
    """
    from transformers import GenerationConfig

    saved = lm.generation_config
    lm.generation_config = GenerationConfig()
    try:
        yield
    finally:
        lm.generation_config = saved
