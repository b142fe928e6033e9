"""The RL tests' models: the one tiny random Llama of tests/conftest.py (``tiny_model_dir``), loaded once per module."""

import pytest
import torch


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    """The tiny model's tokenizer (the embedded model's, with its chat template)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def tiny_lm(tiny_model_dir):
    """The tiny random Llama of ``tiny_model_dir`` in memory (eval mode); deep-copy it before training it."""
    from transformers import LlamaForCausalLM

    torch.set_num_threads(1)
    return LlamaForCausalLM.from_pretrained(tiny_model_dir).eval()
