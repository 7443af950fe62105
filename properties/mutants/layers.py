"""Broken layers: a Linear backward that transposes or sums wrongly, a LayerNorm over the batch, a lossy coalesce."""

from __future__ import annotations

import functools
import warnings

import torch
from torch import nn

from properties.mutants import Mutant


class _BrokenLinear(torch.autograd.Function):
    """y = x·Wᵀ + b forward; backward correct for x, broken for W or b as `mode` says."""

    @staticmethod
    def forward(ctx, x, weight, bias, mode, original):
        ctx.save_for_backward(x, weight)
        ctx.mode, ctx.has_bias = mode, bias is not None
        return original(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        rows_out, rows_x = grad_out.reshape(-1, grad_out.shape[-1]), x.reshape(-1, x.shape[-1])
        grad_x = grad_out @ weight
        grad_w = rows_out.T @ rows_x
        grad_b = rows_out.sum(0) if ctx.has_bias else None
        if ctx.mode == "transpose":
            grad_w = grad_w.T.reshape(grad_w.shape)
        elif ctx.mode == "bias-sums-outputs" and grad_b is not None:
            grad_b = rows_out.sum().expand_as(grad_b).clone()
        return grad_x, grad_w, grad_b, None, None


def _broken_linear(monkeypatch, mode: str) -> None:
    original = nn.functional.linear

    @functools.wraps(original)
    def linear(input, weight, bias=None):
        return _BrokenLinear.apply(input, weight, bias, mode, original)

    monkeypatch.setattr(nn.functional, "linear", linear)


def _layer_norm_over_batch(monkeypatch) -> None:
    """F.layer_norm that normalises over every element of the batch, coupling the rows."""
    original = nn.functional.layer_norm

    @functools.wraps(original)
    def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
        centred = input - input.mean()
        out = centred / torch.sqrt(centred.pow(2).mean() + eps)
        out = out if weight is None else out * weight
        return out if bias is None else out + bias

    monkeypatch.setattr(nn.functional, "layer_norm", layer_norm)


def _coalesce_keeps_first(monkeypatch) -> None:
    """Tensor.coalesce that keeps the first value of a repeated index instead of summing them."""
    original = torch.Tensor.coalesce

    def coalesce(self):
        indices, values = self._indices(), self._values()
        unique, inverse = indices.unique(dim=1, return_inverse=True)
        first = torch.full((unique.shape[1],), len(inverse), dtype=torch.long)
        first = first.scatter_reduce(0, inverse, torch.arange(len(inverse)), reduce="amin")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse invariant checks")
            return original(torch.sparse_coo_tensor(unique, values[first], self.shape))

    monkeypatch.setattr(torch.Tensor, "coalesce", coalesce)


LINEAR_BACKWARD_TRANSPOSES_WEIGHT_GRAD = Mutant(
    "linear-backward-transposes-weight-grad",
    "nn.Linear's backward returns (∂L/∂W)ᵀ (reshaped when W is not square)",
    lambda mp: _broken_linear(mp, "transpose"),
)
LINEAR_BACKWARD_SUMS_BIAS_OVER_OUTPUTS = Mutant(
    "linear-backward-sums-bias-over-outputs",
    "nn.Linear's backward gives every bias element Σ over rows and outputs (right only for one output)",
    lambda mp: _broken_linear(mp, "bias-sums-outputs"),
)
LAYER_NORM_OVER_BATCH = Mutant(
    "layer-norm-over-batch", "F.layer_norm normalises over the whole batch instead of each row", _layer_norm_over_batch
)
COALESCE_KEEPS_FIRST = Mutant(
    "coalesce-keeps-first-duplicate",
    "Tensor.coalesce keeps the first value of a repeated index instead of summing them",
    _coalesce_keeps_first,
)

MUTANTS = (
    LINEAR_BACKWARD_TRANSPOSES_WEIGHT_GRAD,
    LINEAR_BACKWARD_SUMS_BIAS_OVER_OUTPUTS,
    LAYER_NORM_OVER_BATCH,
    COALESCE_KEEPS_FIRST,
)
