"""Local chat generation with transformers (the default backend)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from r2_write.llm.base import Conversation, Generation, LLMError
from r2_write.llm.config import LLMConfig, SamplingParams

logger = logging.getLogger(__name__)


def load_model_and_tokenizer(path: str, device: str = "auto", dtype: str = "auto"):
    """Load a causal LM and its tokenizer from a local directory (left padding for batches)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not Path(path).exists():
        raise LLMError(
            f"model directory {path!r} does not exist; run `make model` to prepare the embedded "
            "model, or set the model path in conf/base/parameters.yml"
        )
    tok = AutoTokenizer.from_pretrained(path, padding_side="left")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    return model.to(dev).eval(), tok


class TransformersBackend:
    """Batched local generation with the model's chat template applied."""

    name = "transformers"

    def __init__(self, cfg: LLMConfig, model=None, tokenizer=None):
        self.cfg = cfg
        self.model_name = self.model = cfg.model
        if model is None:
            model, tokenizer = load_model_and_tokenizer(cfg.model, cfg.device, cfg.dtype)
        self.lm, self.tok = model, tokenizer

    def _encode(self, conversations: list[Conversation], assistant_prefix: str = "") -> dict:
        texts = [
            self.tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) + assistant_prefix
            for c in conversations
        ]
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

    @torch.no_grad()
    def next_token_probs(
        self, conversations: list[Conversation], candidates: list[str], assistant_prefix: str = ""
    ) -> list[dict[str, float]]:
        """Probability that the assistant continues ``assistant_prefix`` with each candidate.

        One forward pass over the prompts gives every single-token candidate; a multi-token
        candidate (e.g. "10") is extended token by token from the cached prefix, so it
        costs a few one-token steps, not another pass over the prompt. A candidate that is a
        prefix of another ("1" of "10") has the longer one's mass removed.
        """
        import copy

        tokens = [self.tok.encode(c, add_special_tokens=False) for c in candidates]
        if any(not t for t in tokens):
            raise LLMError(f"a candidate in {candidates!r} encodes to no token")
        batch = self._encode(conversations, assistant_prefix)
        mask = batch["attention_mask"]
        pos = (mask.cumsum(-1) - 1).clamp_min(0)
        out = self.lm(input_ids=batch["input_ids"], attention_mask=mask, position_ids=pos, use_cache=True)
        first = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)
        logp = torch.stack([first[:, t[0]] for t in tokens], dim=1)
        for i, t in enumerate(tokens):
            if len(t) == 1:
                continue
            cache, m, p = copy.deepcopy(out.past_key_values), mask, pos[:, -1:]
            for j in range(1, len(t)):
                m = torch.cat([m, torch.ones_like(m[:, :1])], dim=1)
                p = p + 1
                step_ids = torch.full((len(conversations), 1), t[j - 1], device=self.lm.device)
                step = self.lm(input_ids=step_ids, attention_mask=m, position_ids=p, past_key_values=cache, use_cache=True)
                cache = step.past_key_values
                logp[:, i] += torch.log_softmax(step.logits[:, -1, :].float(), dim=-1)[:, t[j]]
        probs = logp.exp().cpu()
        for i, ti in enumerate(tokens):
            for j, tj in enumerate(tokens):
                if i != j and len(tj) > len(ti) and tj[: len(ti)] == ti:
                    probs[:, i] -= probs[:, j]
        probs = probs.clamp_min(0.0)
        return [dict(zip(candidates, row.tolist())) for row in probs]
