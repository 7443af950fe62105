"""Accumulation procedures: k backward calls over micro-batches whose .grad should be the window's gradient."""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import torch
from torch import nn

from properties import grads as G
from properties.case import Case
from properties.optimizers import named_state
from properties.reference import Batch, Snapshot, parameters


def windows_of(micro_batches: Sequence, k: int, *, keep_short: bool = True) -> list[list]:
    """Consecutive windows of k micro-batches; a short last window kept, or dropped with keep_short=False."""
    windows = [list(micro_batches[i : i + k]) for i in range(0, len(micro_batches), k)]
    return windows if keep_short or not windows or len(windows[-1]) == k else windows[:-1]


SCALED_MEANS = "scaled means"
SUMS_OVER_COUNT = "sums over count"
MEANS_OVER_K = "means over k"
UNSCALED_MEANS = "unscaled means"

PROCEDURES = {
    SCALED_MEANS: "Σⱼ (mⱼ/N)·mean lossⱼ",
    SUMS_OVER_COUNT: "Σⱼ sum lossⱼ, then .grad / (N·d_out)",
    MEANS_OVER_K: "Σⱼ mean lossⱼ / k",
    UNSCALED_MEANS: "Σⱼ mean lossⱼ",
}
CORRECT = (SCALED_MEANS, SUMS_OVER_COUNT)


def element_count(micro_batches: Sequence[Batch]) -> int:
    """N·d_out: how many squared errors the window's mean MSE averages."""
    return sum(y.numel() for _, y in micro_batches)


def rows(micro_batches: Sequence[Batch]) -> int:
    """N = Σⱼ mⱼ."""
    return sum(len(x) for x, _ in micro_batches)


def accumulate(model: nn.Module, micro_batches: Sequence[Batch], how: str = SCALED_MEANS) -> None:
    """One backward per micro-batch, its loss scaled as `how` names (see PROCEDURES); .grad holds the sum."""
    n, k = rows(micro_batches), len(micro_batches)
    for x, y in micro_batches:
        if how == SCALED_MEANS:
            loss = G.mse(model, x, y) * (len(x) / n)
        elif how == SUMS_OVER_COUNT:
            loss = G.mse(model, x, y, reduction="sum")
        elif how == MEANS_OVER_K:
            loss = G.mse(model, x, y) / k
        elif how == UNSCALED_MEANS:
            loss = G.mse(model, x, y)
        else:
            raise ValueError(f"unknown procedure {how!r}; expected one of {list(PROCEDURES)}")
        loss.backward()
    if how == SUMS_OVER_COUNT:
        count = element_count(micro_batches)
        with torch.no_grad():
            for _, p in G.trainable(model):
                if p.grad is not None:
                    p.grad.div_(count)


def windows(case: Case, steps: int) -> list[list[Batch]]:
    """`steps` windows of fresh rows, each cut into micro-batches of the case's sizes."""
    k = len(case.sizes)
    batches = replace(case, sizes=tuple(case.sizes) * steps).micro_batches()
    return [batches[w * k : (w + 1) * k] for w in range(steps)]


def accumulated_run(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    windows_: Sequence[Sequence[Batch]],
    how: str = SCALED_MEANS,
    set_to_none: bool = True,
) -> list[Snapshot]:
    """For each window: zero_grad, accumulate its micro-batches as `how` says, step; a snapshot after each step."""
    snapshots = []
    for micro_batches in windows_:
        optimizer.zero_grad(set_to_none=set_to_none)
        accumulate(model, micro_batches, how)
        used = G.grads(model)
        optimizer.step()
        snapshots.append(Snapshot(used, parameters(model), named_state(optimizer, model)))
    return snapshots
