"""Chunked scoring (rl/model.py): the same log-probs, entropies, values and gradients as full logits, without [T, vocab].

The reference is the unchunked path (``response_logits_and_values`` then ``logprobs_from_logits`` /
``entropy_from_logits``, full ``[B, T, vocab]`` logits). Tolerance 1e-5 absolute on log-probs and
entropies (float32; only the summation order differs), gradients ``rtol=1e-4, atol=1e-6``.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from r2_write.rl.model import (
    Actor,
    Critic,
    PolicyWithValue,
    chunked_logprobs,
    reference_logprobs,
    response_logits_and_values,
    response_scores,
)
from r2_write.rl.utils import entropy_from_logits, logprobs_from_logits

CONTEXT, WIDTH = 5, 23  # prompt columns, total columns (18 response positions: 4 chunks of 5, the last partial)


@pytest.fixture()
def batch(tokenizer):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, len(tokenizer), (2, WIDTH), generator=g)
    att = torch.ones_like(ids)
    att[1, :2] = 0  # left padding in the prompt of row 2
    return ids, att


def unchunked(policy, ids, att, temperature):
    logits, values = response_logits_and_values(policy, ids, att, CONTEXT, temperature)
    return logprobs_from_logits(logits, ids[:, CONTEXT:]), entropy_from_logits(logits), values


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_chunked_scores_equal_full_logits(tiny_lm, batch, temperature):
    policy = PolicyWithValue(copy.deepcopy(tiny_lm)).eval()
    ids, att = batch
    with torch.no_grad():
        lp0, ent0, v0 = unchunked(policy, ids, att, temperature)
        for chunk in (5, 1, 0, 1000):
            lp, ent, v = response_scores(policy, ids, att, CONTEXT, temperature, chunk, entropy=True)
            assert lp.shape == ent.shape == v.shape == (2, WIDTH - CONTEXT)
            torch.testing.assert_close(lp, lp0, rtol=0, atol=1e-5)
            torch.testing.assert_close(ent, ent0, rtol=0, atol=1e-5)
            torch.testing.assert_close(v, v0, rtol=0, atol=1e-6)
        lp_actor, ent_actor, none = response_scores(Actor(policy.lm), ids, att, CONTEXT, temperature, 5)
        torch.testing.assert_close(lp_actor, lp0, rtol=0, atol=1e-5)
        assert ent_actor is None and none is None


def test_reference_logprobs_are_chunked_and_equal_full_logits(tiny_lm, batch):
    ids, att = batch
    with torch.no_grad():
        expected = unchunked(Actor(tiny_lm), ids, att, 0.7)[0]
        for chunk in (4, 0):
            torch.testing.assert_close(reference_logprobs(tiny_lm, ids, att, CONTEXT, 0.7, chunk), expected,
                                       rtol=0, atol=1e-5)


@pytest.mark.parametrize("entropy_grad", [False, True])
def test_chunked_gradients_equal_full_logits(tiny_lm, batch, entropy_grad):
    ids, att = batch
    weights = torch.linspace(-1.0, 1.0, WIDTH - CONTEXT)  # a loss that weighs positions differently

    def grads(chunk):
        torch.manual_seed(0)  # the same value head both times
        policy = PolicyWithValue(copy.deepcopy(tiny_lm), value_head=torch.nn.Linear(32, 1)).train()
        if chunk is None:
            lp, ent, v = unchunked(policy, ids, att, 0.7)
        else:
            lp, ent, v = response_scores(policy, ids, att, CONTEXT, 0.7, chunk, entropy=True, entropy_grad=entropy_grad)
        loss = (lp * weights).sum() + 0.1 * (v**2).sum() + (0.3 * (ent * weights).sum() if entropy_grad else 0.0)
        loss.backward()
        return {n: p.grad.clone() for n, p in policy.named_parameters() if p.grad is not None}

    expected, got = grads(None), grads(5)
    assert set(got) == set(expected) and "lm.lm_head.weight" in got and "value_head.weight" in got
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")


class _LogitShapes(TorchDispatchMode):
    """Records the widest ``[B, t, vocab]`` tensor any op produces (forward and backward)."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab, self.widest = vocab, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.dim() == 3 and t.shape[-1] == self.vocab:
                self.widest = max(self.widest, t.shape[1])
        return out


@pytest.mark.parametrize("chunk", [5, 0])
def test_no_op_builds_logits_wider_than_a_chunk(tiny_lm, batch, chunk):
    """Forward and backward of the update's scoring: the widest [B, t, vocab] tensor is one chunk (5), not 18."""
    policy = PolicyWithValue(copy.deepcopy(tiny_lm)).train()
    ids, att = batch
    with _LogitShapes(tiny_lm.config.vocab_size) as seen:
        lp, ent, v = response_scores(policy, ids, att, CONTEXT, 1.0, chunk, entropy=True)
        (lp.sum() + v.sum()).backward()
    assert seen.widest == (5 if chunk else WIDTH - CONTEXT)


def test_chunked_logprobs_of_no_position():
    lp, ent = chunked_logprobs(torch.zeros(2, 0, 4), torch.nn.Linear(4, 7), torch.zeros(2, 0, dtype=torch.long),
                               entropy=True)
    assert lp.shape == ent.shape == (2, 0)


def test_wrappers_expose_the_decoder_layer_class_for_fsdp(tiny_lm):
    """accelerate reads _no_split_modules from the object given to prepare: each wrapper passes the inner model's on."""
    from transformers import LlamaModel

    assert set(tiny_lm._no_split_modules) == {"LlamaDecoderLayer"}
    assert PolicyWithValue(tiny_lm)._no_split_modules == ["LlamaDecoderLayer"]
    assert Actor(tiny_lm)._no_split_modules == ["LlamaDecoderLayer"]
    assert Critic(LlamaModel(tiny_lm.config))._no_split_modules == ["LlamaDecoderLayer"]
