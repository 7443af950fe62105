"""Broken torch pieces a training loop relies on: the recipe properties must reject even the correct loop under them."""

from __future__ import annotations

import torch

from properties.mutants import Mutant


def _zero_grad_ignored(monkeypatch) -> None:
    monkeypatch.setattr(torch.optim.Optimizer, "zero_grad", lambda self, set_to_none=True: None)


def _clip_grad_norm_ignored(monkeypatch) -> None:
    original = torch.nn.utils.clip_grad_norm_

    def clip_grad_norm_(parameters, max_norm, *args, **kwargs):
        return original(parameters, float("inf"), *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip_grad_norm_)


OPTIMIZER_ZERO_GRAD_IGNORED = Mutant(
    "optimizer-zero-grad-ignored",
    "Optimizer.zero_grad does nothing, so gradients carry into the next window",
    _zero_grad_ignored,
)
CLIP_GRAD_NORM_IGNORED = Mutant(
    "clip-grad-norm-ignored", "clip_grad_norm_ returns the norm but never scales the gradients", _clip_grad_norm_ignored
)

MUTANTS = (OPTIMIZER_ZERO_GRAD_IGNORED, CLIP_GRAD_NORM_IGNORED)
