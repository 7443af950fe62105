"""Broken loss reductions: a mean MSE or cross-entropy that divides by the wrong count."""

from __future__ import annotations

import functools

from torch import nn

from properties.mutants import Mutant


def _mse_mean_divides_by(monkeypatch, divisor, what: str) -> None:
    """F.mse_loss whose reduction='mean' is the sum divided by divisor(input) instead of input.numel()."""
    original = nn.functional.mse_loss

    @functools.wraps(original)
    def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", **kwargs):
        if reduction != "mean" or size_average is not None or reduce is not None:
            return original(input, target, size_average, reduce, reduction, **kwargs)
        return original(input, target, reduction="sum", **kwargs) / divisor(input)

    mse_loss.__doc__ = f"mse_loss with a mean over {what}"
    monkeypatch.setattr(nn.functional, "mse_loss", mse_loss)


def _cross_entropy_counts_ignored(monkeypatch) -> None:
    """F.cross_entropy whose mean divides by every target, ignore_index ones included."""
    original = nn.functional.cross_entropy

    @functools.wraps(original)
    def cross_entropy(input, target, *args, reduction="mean", **kwargs):
        if reduction != "mean":
            return original(input, target, *args, reduction=reduction, **kwargs)
        return original(input, target, *args, reduction="sum", **kwargs) / target.numel()

    monkeypatch.setattr(nn.functional, "cross_entropy", cross_entropy)


def _rows(input):
    return input.shape[0] if input.dim() > 1 else input.numel()


MSE_MEAN_DIVIDES_BY_ROWS = Mutant(
    "mse-mean-divides-by-rows",
    "F.mse_loss(reduction='mean') divides by the number of rows N instead of N·d_out (wrong with several outputs)",
    lambda mp: _mse_mean_divides_by(mp, _rows, "rows"),
)
MSE_MEAN_SUMS_ROWS = Mutant(
    "mse-mean-sums-rows",
    "F.mse_loss(reduction='mean') averages over the outputs only and sums over the rows",
    lambda mp: _mse_mean_divides_by(mp, lambda input: input.shape[-1] if input.dim() > 1 else 1, "outputs"),
)
MSE_MEAN_DIVIDES_BY_ONE_MORE = Mutant(
    "mse-mean-divides-by-count-plus-one",
    "F.mse_loss(reduction='mean') divides by N·d_out + 1",
    lambda mp: _mse_mean_divides_by(mp, lambda input: input.numel() + 1, "count + 1"),
)
CROSS_ENTROPY_COUNTS_IGNORED = Mutant(
    "cross-entropy-counts-ignored-tokens",
    "F.cross_entropy(reduction='mean') divides by every target, ignore_index padding included",
    _cross_entropy_counts_ignored,
)

MUTANTS = (MSE_MEAN_DIVIDES_BY_ROWS, MSE_MEAN_SUMS_ROWS, MSE_MEAN_DIVIDES_BY_ONE_MORE, CROSS_ENTROPY_COUNTS_IGNORED)
