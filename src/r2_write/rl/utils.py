"""Masked tensor helpers for padded token batches (after old TRL ``core.py``).

Every tensor is ``[batch, tokens]`` (or ``[batch, tokens, vocab]`` for logits); ``mask`` is
1 on real response tokens and 0 on padding, and padding never contributes to a statistic.

>>> import torch
>>> x = torch.tensor([[1.0, 2.0, 99.0]]); m = torch.tensor([[1, 1, 0]])
>>> masked_mean(x, m).item()
1.5
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def masked_mean(values: torch.Tensor, mask: torch.Tensor, axis: int | None = None) -> torch.Tensor:
    """Mean of ``values`` over the positions where ``mask`` is 1 (all of them, or along ``axis``)."""
    mask = mask.to(values.dtype)
    if axis is None:
        return (values * mask).sum() / mask.sum().clamp(min=1.0)
    return (values * mask).sum(axis) / mask.sum(axis).clamp(min=1.0)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of ``values`` over the masked positions (Bessel-corrected when ``unbiased``).

    >>> import torch
    >>> round(masked_var(torch.tensor([1.0, 3.0, 50.0]), torch.tensor([1, 1, 0])).item(), 6)
    2.0
    """
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    if unbiased:
        n = mask.sum()
        if n < 2:
            return torch.zeros_like(var)
        var = var * n / (n - 1)
    return var


def masked_whiten(
    values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, all_reduce: Callable | None = None
) -> torch.Tensor:
    """Normalise the masked positions to zero mean and unit variance; padding is set to 0.

    With ``shift_mean=False`` only the scale changes (the mean is added back). ``all_reduce``
    (a function summing a tensor over the data-parallel processes) makes the mean and variance
    those of the global batch, as if one process held every row: each process holds only its
    shard of the rows, and whitening it with its own statistics would give each shard zero
    mean, which one process on the whole batch does not.
    """
    if all_reduce is None:
        mean, var = masked_mean(values, mask), masked_var(values, mask)
    else:
        mean, var = masked_mean_var_across(values, mask, all_reduce)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask.to(values.dtype)


def masked_mean_var_across(
    values: torch.Tensor, mask: torch.Tensor, all_reduce: Callable
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked mean and Bessel-corrected variance over every process's rows (two passes, float64 sums).

    ``all_reduce`` sums a tensor over the processes (e.g. ``accelerator.reduce(t, "sum")``).
    With the identity as ``all_reduce`` this is :func:`masked_mean` and :func:`masked_var`.

    >>> import torch
    >>> x, m = torch.tensor([[1.0, 3.0, 50.0]]), torch.tensor([[1, 1, 0]])
    >>> [round(v.item(), 6) for v in masked_mean_var_across(x, m, lambda t: t)]
    [2.0, 2.0]
    """
    m = mask.to(torch.float64)
    x = values.to(torch.float64)
    total, n = all_reduce(torch.stack([(x * m).sum(), m.sum()])).unbind()
    mean = total / n.clamp(min=1.0)
    squares = all_reduce(((x - mean) ** 2 * m).sum())
    var = squares / (n - 1) if n >= 2 else torch.zeros_like(squares)
    return mean.to(values.dtype), var.to(values.dtype)


def logprobs_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Log-probability of each label token: ``logits [B, T, V]``, ``labels [B, T]`` -> ``[B, T]``."""
    logits = logits.float()
    picked = torch.gather(logits, 2, labels.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the categorical distribution at each position: ``[B, T, V]`` -> ``[B, T]``."""
    logits = logits.float()
    probs = F.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(-1)
