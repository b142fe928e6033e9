"""PPO rollouts: sample responses to chat-templated prompts and score them with the policy, critic and reference.

:func:`rollout` samples with ``generate`` under :func:`_generation_config` alone (nothing from
the checkpoint's ``generation_config.json``) or with vLLM (:class:`VLLMSampler`, GPU), then
computes the old logprobs, values and reference logprobs PPO needs, and decodes each response
with the character span of every token (where :func:`r2_write.rl.ppo.token_scores` places the
rewards). Tensors are ``[batch, response_tokens]``; ``response_mask`` is 1 on response tokens
up to and including the first EOS, 0 on the padding after it.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from r2_write.prompts.policy import policy_messages
from r2_write.rl.model import (
    Actor,
    Critic,
    PolicyWithValue,
    reference_logprobs,
    response_scores,
    response_values,
    root_gathered,
)
from r2_write.rl.ppo_config import PPOConfig


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
    the same ids (the usual case). Otherwise (sampled ids that are not the tokenizer's own
    tokenization of their text) token ``i`` ends where the decoded prefix ``ids[:i+1]`` ends,
    found by :func:`_prefix_lengths` without decoding every prefix (which cost about 66 s per
    25k-token row). Special tokens (EOS) are not in the text and get an empty span where they occur.
    """
    special = set(tokenizer.all_special_ids)
    text = tokenizer.decode(ids, skip_special_tokens=True)
    plain = [t for t in ids if t not in special]
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if enc["input_ids"] == plain:
        spans = [tuple(o) for o in enc["offset_mapping"]]
    else:
        spans, prev = [], 0
        for length in _prefix_lengths(tokenizer, plain, text):
            end = min(max(length, prev), len(text))
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


def _prefix_lengths(tokenizer, plain: list[int], text: str, window: int = 8) -> list[int]:
    """``len(decode(plain[: i + 1]))`` for every ``i``, decoding short windows instead of every prefix.

    The decoded prefix up to an *anchor* is known (its length and that it equals the start of
    ``text``); each later prefix is that plus the decode of the tokens since the anchor. The
    anchor moves on every ``window`` tokens, to where the window decodes to exactly the next
    characters of ``text`` and does not end inside a character (no trailing U+FFFD from a split
    UTF-8 sequence), so decoding stays additive across it: about ``window`` tokens per decode
    instead of ``i``. Byte-level BPE tokenizers (GPT-2, SmolLM2, Qwen2.5, Llama 3) decode
    additively at such anchors. Where a window does not match ``text`` (a tokenizer that strips
    a leading space, or cleans up spaces across the anchor), the lengths since the anchor are
    recomputed, and every later one found, by decoding the whole prefix, as before.
    """
    lengths, anchor, base = [], 0, 0
    for i in range(len(plain)):
        if anchor is None:  # not additive: whole prefixes
            lengths.append(len(tokenizer.decode(plain[: i + 1], skip_special_tokens=True)))
            continue
        piece = tokenizer.decode(plain[anchor : i + 1], skip_special_tokens=True)
        lengths.append(base + len(piece))
        if i + 1 - anchor < window or not piece or piece.endswith("\ufffd"):
            continue
        if text.startswith(piece, base):
            anchor, base = i + 1, base + len(piece)
        else:
            lengths[anchor:] = [len(tokenizer.decode(plain[: j + 1], skip_special_tokens=True))
                                for j in range(anchor, i + 1)]
            anchor = None
    return lengths


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
        with _without_checkpoint_generation_defaults(policy.lm), root_gathered(policy):
            chunks = [
                policy.lm.generate(input_ids=queries[s : s + step], attention_mask=query_mask[s : s + step],
                                   generation_config=gen_cfg, synced_gpus=_layers_sharded(policy))[:, queries.shape[1]:]
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
        lp, _, v = response_scores(policy, ids, att, queries.shape[1], cfg.temperature, cfg.logits_chunk_size)
        if critic is not None:
            v = response_values(critic, ids, att, queries.shape[1])
        logprobs.append(lp)
        values.append(v.float())
        ref_logprobs.append(reference_logprobs(ref_model, ids, att, queries.shape[1], cfg.temperature,
                                               cfg.logits_chunk_size))
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

    ``vllm_sleep_mode``: the engine sleeps at level 2 (weights and KV cache released) from the
    end of each rollout until the next one, so scoring and the update have the GPU memory
    vLLM held; :meth:`sync_weights` wakes its weights and loads the updated policy into them,
    and the next rollout wakes the KV cache (TRL's ``VLLMGeneration`` does the calls).
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
            max_completion_length=cfg.max_new_tokens, enable_sleep_mode=cfg.vllm_sleep_mode,
        )

    def __call__(self, queries: torch.Tensor, query_mask: torch.Tensor) -> list[list[int]]:
        """Completion token ids for each left-padded query row (padding removed first)."""
        prompts = [row[mask.bool()].tolist() for row, mask in zip(queries.cpu(), query_mask.cpu())]
        _, completion_ids, _, _ = self.generation.generate(prompts, images=None, num_generations=1)
        return completion_ids

    def sync_weights(self) -> None:
        self.generation.sync_weights()


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


def _layers_sharded(model: nn.Module) -> bool:
    """Whether ``model``'s decoder layers are FSDP units of several processes: then every process must run as
    many forward passes as the longest generation (``generate(synced_gpus=True)``), each one all-gathers the layers."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return False
    return any(hasattr(m, "unshard") for m in model.modules() if m is not model)


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
