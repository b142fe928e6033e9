"""Masked tensor helpers: padding never counts."""

import math

import pytest
import torch

from r2_write.rl.utils import entropy_from_logits, logprobs_from_logits, masked_mean, masked_var, masked_whiten

VALUES = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 5.0, -50.0, -50.0]])
MASK = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])


def test_masked_mean_ignores_padding():
    assert masked_mean(VALUES, MASK).item() == pytest.approx(3.0)  # (1+2+3+4+5)/5
    assert masked_mean(VALUES, MASK, axis=1).tolist() == pytest.approx([2.0, 4.5])


def test_masked_var_matches_torch_on_the_real_values():
    real = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    assert masked_var(VALUES, MASK).item() == pytest.approx(real.var().item())  # 2.5
    assert masked_var(VALUES, MASK, unbiased=False).item() == pytest.approx(real.var(unbiased=False).item())


def test_masked_whiten_zero_mean_unit_var_and_zero_padding():
    w = masked_whiten(VALUES, MASK)
    assert masked_mean(w, MASK).item() == pytest.approx(0.0, abs=1e-6)
    assert masked_var(w, MASK).item() == pytest.approx(1.0, abs=1e-4)
    assert w[0, 3].item() == 0.0 and w[1, 2:].abs().sum().item() == 0.0
    kept = masked_whiten(VALUES, MASK, shift_mean=False)
    assert masked_mean(kept, MASK).item() == pytest.approx(3.0, abs=1e-5)


def test_logprobs_from_logits_equals_log_softmax_gather():
    torch.manual_seed(0)
    logits, labels = torch.randn(2, 3, 7), torch.randint(0, 7, (2, 3))
    expected = logits.log_softmax(-1).gather(2, labels.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(logprobs_from_logits(logits, labels), expected, atol=1e-6)


def test_entropy_from_logits():
    uniform = torch.zeros(1, 2, 8)
    assert entropy_from_logits(uniform)[0].tolist() == pytest.approx([math.log(8)] * 2)
    peaked = torch.tensor([[[100.0, 0.0, 0.0]]])
    assert entropy_from_logits(peaked).item() == pytest.approx(0.0, abs=1e-6)
