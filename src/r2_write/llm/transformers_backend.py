"""Local chat generation with transformers (the default backend)."""

from __future__ import annotations

import copy
import inspect
import logging
import math

import torch

from r2_write.llm.base import Conversation, Generation, LLMError
from r2_write.llm.config import LLMConfig, SamplingParams
from r2_write.llm.loading import load_causal_lm, load_tokenizer

logger = logging.getLogger(__name__)


def load_model_and_tokenizer(path: str, device: str = "auto", dtype: str = "auto"):
    """Load a causal LM and its tokenizer from a local directory (left padding for batches)."""
    tok = load_tokenizer(path, padding_side="left")
    model = load_causal_lm(path, dtype=dtype)
    dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    return model.to(dev).eval(), tok


class TransformersBackend:
    """Batched local generation with the model's chat template applied."""

    name = "transformers"
    share_prefixes = True  # score prompts with a long common prefix from one prefill of it
    min_shared_tokens = 64  # shortest prefix worth a prefill of its own (see plan_shared_prefixes)

    def __init__(self, cfg: LLMConfig, model=None, tokenizer=None):
        self.cfg = cfg
        self.model_name = self.model = cfg.model
        if model is None:
            model, tokenizer = load_model_and_tokenizer(cfg.model, cfg.device, cfg.dtype)
        self.lm, self.tok = model, tokenizer
        self._cache_arg: str | None = None  # the forward's KV-cache argument, found on first use

    def _texts(self, conversations: list[Conversation], assistant_prefix: str = "") -> list[str]:
        """The prompts as the model reads them: chat template, generation prompt, ``assistant_prefix``."""
        return [
            self.tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) + assistant_prefix
            for c in conversations
        ]

    def _encode(self, conversations: list[Conversation]) -> dict:
        texts = self._texts(conversations)
        return self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.lm.device)

    @torch.no_grad()
    def generate(self, conversations: list[Conversation], sampling: SamplingParams) -> list[Generation]:
        """Generate in batches of ``cfg.batch_size``; seeded by ``sampling.seed``."""
        out: list[Generation] = []
        for start in range(0, len(conversations), self.cfg.batch_size):
            batch = self._encode(conversations[start : start + self.cfg.batch_size])
            torch.manual_seed(sampling.seed + start)
            greedy = sampling.temperature == 0
            ids = self.lm.generate(
                **batch,
                max_new_tokens=sampling.max_new_tokens,
                do_sample=not greedy,
                temperature=None if greedy else sampling.temperature,
                top_p=None if greedy else sampling.top_p,
                top_k=None,
                pad_token_id=self.tok.pad_token_id,
            )
            prompt_len = batch["input_ids"].shape[1]
            for row, mask in zip(ids, batch["attention_mask"]):
                completion = row[prompt_len:]
                n = int((completion != self.tok.pad_token_id).sum())
                finished = bool((completion == self.tok.eos_token_id).any())
                out.append(
                    Generation(
                        text=self.tok.decode(completion, skip_special_tokens=True).strip(),
                        prompt_tokens=int(mask.sum()),
                        completion_tokens=n,
                        finish_reason="stop" if finished else "length",
                    )
                )
        return out

    @property
    def probs_chunk_size(self) -> int:
        """Prompts per :meth:`next_token_probs` call from the client (its unit of cache commits).

        Eight batches when prefixes are shared, so that the criteria of one response seldom
        fall into two calls (and two prefills); the model still runs ``cfg.batch_size`` rows
        at most at once.
        """
        return self.cfg.batch_size * (8 if self.share_prefixes else 1)

    @torch.no_grad()
    def next_token_probs(
        self, conversations: list[Conversation], candidates: list[str], assistant_prefix: str = ""
    ) -> list[dict[str, float]]:
        """Probability that the assistant continues ``assistant_prefix`` with each candidate.

        One forward pass over the prompts gives every single-token candidate; a multi-token
        candidate (e.g. "10") is extended token by token from the cached prefix, so it
        costs a few one-token steps, not another pass over the prompt. A candidate that is a
        prefix of another ("1" of "10") has the longer one's mass removed.

        Prompts that share a long token prefix (a judge's criteria of one response, the key
        points of one report: see :func:`plan_shared_prefixes`) are scored from one prefill of
        that prefix: its KV cache is expanded to the group's rows and only each prompt's own
        suffix is run on top of it. The probabilities equal those of separate prompts to float
        precision (the same tokens, the same positions). At most ``cfg.batch_size`` rows go
        through the model at once.
        """
        tokens = [self.tok.encode(c, add_special_tokens=False) for c in candidates]
        if any(not t for t in tokens):
            raise LLMError(f"a candidate in {candidates!r} encodes to no token")
        ids = self.tok(self._texts(conversations, assistant_prefix), add_special_tokens=False)["input_ids"]
        groups, alone = (
            plan_shared_prefixes(ids, self.min_shared_tokens) if self.share_prefixes else ([], list(range(len(ids))))
        )
        out: list[dict[str, float] | None] = [None] * len(ids)
        bs = self.cfg.batch_size
        for start in range(0, len(alone), bs):
            rows = alone[start : start + bs]
            probs = self._probs_of_rows([ids[i] for i in rows], tokens)
            for i, row in zip(rows, probs):
                out[i] = dict(zip(candidates, row.tolist()))
        for shared, rows in groups:
            prefix = self._forward(torch.tensor([ids[rows[0]][:shared]], device=self.lm.device))[1]
            for start in range(0, len(rows), bs):
                part = rows[start : start + bs]
                probs = self._probs_of_rows([ids[i][shared:] for i in part], tokens, prefix, shared)
                for i, row in zip(part, probs):
                    out[i] = dict(zip(candidates, row.tolist()))
        return out  # type: ignore[return-value]

    def _forward(self, input_ids, attention_mask=None, position_ids=None, cache=None):
        """One forward pass with the KV cache: ``(logits, cache)`` (the cache argument is
        ``cache`` from transformers 5.24 on, ``past_key_values`` before)."""
        if self._cache_arg is None:
            params = inspect.signature(self.lm.forward).parameters
            self._cache_arg = "cache" if "cache" in params else "past_key_values"
        out = self.lm(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=True,
            **{self._cache_arg: cache},
        )
        return out.logits, out.cache if self._cache_arg == "cache" else out.past_key_values

    def _probs_of_rows(self, rows: list[list[int]], tokens: list[list[int]], prefix=None, shared: int = 0) -> torch.Tensor:
        """Candidate probabilities ``[len(rows), len(tokens)]`` after each row of token ids.

        With ``prefix`` (the KV cache of ``shared`` tokens, one row), each row continues it:
        the cache is copied and expanded to the rows, the rows are left-padded after it (the
        padding masked out) and positioned from ``shared`` on.
        """
        width = max(len(r) for r in rows)
        pad = self.tok.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=self.lm.device)
        own = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=self.lm.device)
        pos = shared + (own.cumsum(-1) - 1).clamp_min(0)
        cache = None
        mask = own
        if prefix is not None:
            cache = copy.deepcopy(prefix)
            cache.batch_repeat_interleave(len(rows))
            mask = torch.cat([torch.ones(len(rows), shared, dtype=own.dtype, device=own.device), own], dim=1)
        logits, cache = self._forward(input_ids, mask, pos, cache)
        first = torch.log_softmax(logits[:, -1, :].float(), dim=-1)
        logp = torch.stack([first[:, t[0]] for t in tokens], dim=1)
        for i, t in enumerate(tokens):
            if len(t) == 1:
                continue
            step_cache, m, p = copy.deepcopy(cache), mask, pos[:, -1:]
            for j in range(1, len(t)):
                m = torch.cat([m, torch.ones_like(m[:, :1])], dim=1)
                p = p + 1
                step_ids = torch.full((len(rows), 1), t[j - 1], device=self.lm.device)
                step_logits, step_cache = self._forward(step_ids, m, p, step_cache)
                logp[:, i] += torch.log_softmax(step_logits[:, -1, :].float(), dim=-1)[:, t[j]]
        probs = logp.exp().cpu()
        for i, ti in enumerate(tokens):
            for j, tj in enumerate(tokens):
                if i != j and len(tj) > len(ti) and tj[: len(ti)] == ti:
                    probs[:, i] -= probs[:, j]
        return probs.clamp_min(0.0)


def plan_shared_prefixes(ids: list[list[int]], min_shared: int = 64) -> tuple[list[tuple[int, list[int]]], list[int]]:
    """Which prompts to score from a shared prefill: ``(groups, alone)``.

    ``groups`` holds ``(shared, rows)``: the row indices (ascending) whose token ids agree on
    their first ``shared`` tokens (``shared >= min_shared``, and every row keeps at least one
    token of its own after them); ``alone`` the rows scored as separate prompts. The rows are
    sorted by their ids, so rows sharing a prefix are neighbours, and cut into runs that
    minimise the tokens run through the model (a group costs its prefix once, each row its
    suffix, plus ``min_shared`` for the extra forward pass): the criteria of one response form
    one group even when several responses also share a shorter query prefix.

    >>> plan_shared_prefixes([[1, 2, 3, 9], [7, 7], [1, 2, 3, 8]], min_shared=2)
    ([(3, [0, 2])], [1])
    >>> plan_shared_prefixes([[1, 2, 9], [1, 2, 8]], min_shared=3)
    ([], [0, 1])
    """
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    n = len(order)

    def common(a: list[int], b: list[int]) -> int:
        k, limit = 0, min(len(a), len(b)) - 1  # every row keeps a token of its own
        while k < limit and a[k] == b[k]:
            k += 1
        return k

    adjacent = [common(ids[order[k]], ids[order[k + 1]]) for k in range(n - 1)]
    # best[k]: least cost of the first k sorted rows; cut[k]: where their last run starts
    best, cut = [0.0] + [math.inf] * n, [0] * (n + 1)
    for end in range(1, n + 1):
        best[end], cut[end] = best[end - 1] + len(ids[order[end - 1]]), end - 1
        shared, length = math.inf, len(ids[order[end - 1]])
        for start in range(end - 2, -1, -1):  # the run order[start:end], two rows or more
            shared, length = min(shared, adjacent[start]), length + len(ids[order[start]])
            if shared < min_shared:
                break
            cost = best[start] + min_shared + length - (end - start - 1) * shared
            if cost < best[end]:
                best[end], cut[end] = cost, start
    groups, alone, end = [], [], n
    while end > 0:
        start = cut[end]
        rows = order[start:end]
        if len(rows) == 1:
            alone.append(rows[0])
        else:
            groups.append((min(adjacent[start : end - 1]), sorted(rows)))
        end = start
    return sorted(groups, key=lambda g: g[1][0]), sorted(alone)
