"""VLLMBackend is optional: without vLLM it must say how to get it."""

from __future__ import annotations

import importlib.util

import pytest

from r2_write.llm.base import LLMError
from r2_write.llm.client import build_backend
from r2_write.llm.config import LLMConfig
from r2_write.llm.vllm_backend import VLLMBackend


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_missing_vllm_is_a_clear_error():
    cfg = LLMConfig(backend="vllm", cache_path=None)
    with pytest.raises(LLMError, match=r"pip install 'r2_write\[vllm\]'"):
        VLLMBackend(cfg)
    with pytest.raises(LLMError, match="pip install"):
        build_backend(cfg)
