"""Offline batched generation with vLLM (optional extra ``r2_write[vllm]``, GPU machines only)."""

from __future__ import annotations

import math

from r2_write.llm.base import Conversation, Generation, LLMError
from r2_write.llm.config import LLMConfig, SamplingParams


class VLLMBackend:
    """``vllm.LLM.chat`` over whole batches (vLLM schedules them itself).

    Example (``conf/base/parameters.yml``)::

        writer_llm:
          backend: vllm
          model: data/06_models/sft_model
          tensor_parallel_size: 1
          dtype: bfloat16
    """

    name = "vllm"

    def __init__(self, cfg: LLMConfig, seed: int = 0):
        try:
            import vllm
        except ImportError as exc:
            raise LLMError("the vllm backend needs vLLM: pip install 'r2_write[vllm]' on a GPU machine") from exc
        self._vllm = vllm
        self.cfg = cfg
        self.model = cfg.model
        self.llm = vllm.LLM(
            model=cfg.model, tensor_parallel_size=cfg.tensor_parallel_size, dtype=cfg.dtype, seed=seed
        )

    def generate(self, conversations: list[Conversation], sampling: SamplingParams) -> list[Generation]:
        """One completion per conversation, in order (seeded per request by ``sampling.seed``)."""
        if not conversations:
            return []
        params = self._vllm.SamplingParams(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_new_tokens,
            seed=sampling.seed,
        )
        outputs = self.llm.chat(conversations, params, use_tqdm=False)
        gens = []
        for out in outputs:
            best = out.outputs[0]
            gens.append(
                Generation(
                    text=best.text.strip(),
                    prompt_tokens=len(out.prompt_token_ids or []),
                    completion_tokens=len(best.token_ids),
                    finish_reason=best.finish_reason or "stop",
                )
            )
        return gens

    def next_token_probs(
        self, conversations: list[Conversation], candidates: list[str], assistant_prefix: str = ""
    ) -> list[dict[str, float]]:
        """Probability of each candidate as the next token, from the top-20 logprobs.

        A candidate outside the top 20 (vLLM's default ``max_logprobs``) gets 0.
        """
        if not conversations:
            return []
        params = self._vllm.SamplingParams(temperature=0.0, max_tokens=1, logprobs=20)
        if assistant_prefix:
            messages = [c + [{"role": "assistant", "content": assistant_prefix}] for c in conversations]
            outputs = self.llm.chat(
                messages, params, use_tqdm=False, add_generation_prompt=False, continue_final_message=True
            )
        else:
            outputs = self.llm.chat(conversations, params, use_tqdm=False)
        result = []
        for out in outputs:
            step = (out.outputs[0].logprobs or [None])[0]
            if not step:
                raise LLMError("vLLM returned no logprobs; use judge mode 'generate'")
            probs = dict.fromkeys(candidates, 0.0)
            for lp in step.values():  # {token_id: Logprob(logprob, rank, decoded_token)}
                token = (lp.decoded_token or "").strip()
                if token in probs:
                    probs[token] += math.exp(lp.logprob)
            result.append(probs)
        return result
