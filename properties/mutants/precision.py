"""Lossy accumulation: float32 .grad rounded through bfloat16, or accumulated in float16."""

from __future__ import annotations

import functools

import torch

from properties.mutants import Mutant
from properties.mutants.autograd import leaves_of


def _wrap_float32_accumulation(monkeypatch, combine) -> None:
    """After each backward, replace every float32 leaf's .grad by combine(previous .grad or None, new .grad)."""
    original = torch.autograd.backward

    @functools.wraps(original)
    def backward(tensors, *args, **kwargs):
        leaves = [leaf for leaf in leaves_of(tensors) if leaf.dtype == torch.float32]
        before = {id(leaf): leaf.grad for leaf in leaves}
        for leaf in leaves:
            leaf.grad = None
        result = original(tensors, *args, **kwargs)
        for leaf in leaves:
            previous, new = before[id(leaf)], leaf.grad
            if new is None:
                leaf.grad = previous
            elif not new.is_sparse:
                leaf.grad = combine(previous, new)
        return result

    monkeypatch.setattr(torch.autograd, "backward", backward)


def _through_bfloat16(previous, new):
    total = new if previous is None else previous + new
    return total.to(torch.bfloat16).to(torch.float32)


def _in_float16(previous, new):
    return new if previous is None else (previous.to(torch.float16) + new.to(torch.float16)).to(torch.float32)


FLOAT32_GRAD_ROUNDED_THROUGH_BFLOAT16 = Mutant(
    "float32-grad-rounded-through-bfloat16",
    "every float32 .grad is rounded to bfloat16 and back after each backward",
    lambda mp: _wrap_float32_accumulation(mp, _through_bfloat16),
)
FLOAT32_ACCUMULATES_IN_FLOAT16 = Mutant(
    "float32-accumulates-in-float16",
    "backward adds a float32 gradient into .grad in float16 arithmetic",
    lambda mp: _wrap_float32_accumulation(mp, _in_float16),
)

MUTANTS = (FLOAT32_GRAD_ROUNDED_THROUGH_BFLOAT16, FLOAT32_ACCUMULATES_IN_FLOAT16)
