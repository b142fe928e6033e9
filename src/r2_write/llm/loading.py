"""The one loader of local checkpoints: tokenizers and models from a directory.

Every stage loads through here: the local generation backend (:mod:`r2_write.llm.transformers_backend`),
the PPO policy, reference and critic (:mod:`r2_write.rl.model`), the SFT and GRPO trainers
(:mod:`r2_write.training`) and the length checks before training. What it settles once:

- a missing directory is one line saying how to make it (``make model``), not a hub lookup;
- a tokenizer without a pad token pads with its end token;
- a stale GGUF ``quantization_config`` left by the embedded model's conversion is dropped (the
  weights are plain safetensors), so the model saves again with ``save_pretrained``;
- training loads float32 weights by default; inference may ask for ``"auto"`` (the checkpoint's dtype).
"""

from __future__ import annotations

from pathlib import Path

import torch

from r2_write.llm.base import LLMError


def check_model_dir(path: str | Path) -> Path:
    """``path`` as a Path, or :class:`LLMError` naming it when it does not exist."""
    if not Path(path).exists():
        raise LLMError(f"model directory {str(path)!r} does not exist; run `make model` to prepare the embedded "
                       f"model, or set the model path in conf/base/parameters.yml")
    return Path(path)


def load_tokenizer(path: str | Path, padding_side: str | None = None):
    """The tokenizer of a model directory; a missing pad token becomes the end token."""
    from transformers import AutoTokenizer

    kwargs = {"padding_side": padding_side} if padding_side else {}
    tokenizer = AutoTokenizer.from_pretrained(check_model_dir(path), **kwargs)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(path: str | Path, dtype: torch.dtype | str = torch.float32):
    """A causal LM from a local directory (float32 unless ``dtype`` says otherwise; ``"auto"``: as saved)."""
    from transformers import AutoModelForCausalLM

    return _load_pretrained(AutoModelForCausalLM, path, dtype)


def load_backbone(path: str | Path, dtype: torch.dtype | str = torch.float32):
    """The transformer backbone of a causal LM directory (``AutoModel``: hidden states, no LM head).

    The separate critic starts from it; a critic directory (``critic/``) loads the same way.
    From a causal LM directory transformers reports ``lm_head.weight`` as unexpected: the
    head is left out on purpose.
    """
    from transformers import AutoModel

    return _load_pretrained(AutoModel, path, dtype)


def _load_pretrained(auto_cls, path: str | Path, dtype: torch.dtype | str):
    from transformers import AutoConfig

    path = check_model_dir(path)
    config = AutoConfig.from_pretrained(path)
    qc = getattr(config, "quantization_config", None)
    method = qc.get("quant_method") if isinstance(qc, dict) else getattr(qc, "quant_method", None)
    if qc is not None and str(getattr(method, "value", method)) == "gguf":
        del config.quantization_config
    if isinstance(dtype, str) and dtype != "auto":
        dtype = getattr(torch, dtype)
    return auto_cls.from_pretrained(path, config=config, dtype=dtype)
