"""The tutorial this suite grew from (shared/seeds): its data, its two training loops as it wrote them, and their closed forms.

First loop: nn.Linear(1, 1), x = [[1], [2], [3]], y = [[2], [3], [4]], SGD(lr=0.01), 5 epochs of
one step per sample on (output − y)². Second loop: x = 1…5, y = 2x, micro-batches of 2 rows,
accumulation_steps = 2, nn.MSELoss, SGD(lr=0.01), 5 epochs; it sums the micro-batch mean losses'
gradients (k times the window mean's gradient for equal micro-batches) and never steps the short
last window (the fifth row).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from properties import reference as R
from properties.accumulate import windows_of

FIRST_X = ((1.0,), (2.0,), (3.0,))
FIRST_Y = ((2.0,), (3.0,), (4.0,))
SECOND_X = ((1.0,), (2.0,), (3.0,), (4.0,), (5.0,))
SECOND_Y = ((2.0,), (4.0,), (6.0,), (8.0,), (10.0,))
LR = 0.01
EPOCHS = 5
BATCH_SIZE = 2
ACCUMULATION_STEPS = 2


def tensor(rows, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The tutorial's nested lists as a tensor."""
    return torch.tensor(rows, dtype=dtype)


def linear_1x1(weight: float, bias: float, dtype: torch.dtype = torch.float64) -> nn.Linear:
    """nn.Linear(1, 1) with the given w and b: built on the meta device and filled, so torch's global RNG is not used."""
    model = nn.Linear(1, 1, device="meta", dtype=dtype).to_empty(device="cpu")
    with torch.no_grad():
        model.weight.fill_(weight)
        model.bias.fill_(bias)
    return model


def starting_point(seed: int) -> tuple[float, float]:
    """(w, b) drawn from N(0, 1) by a generator seeded with `seed` (the tutorial's own start is torch's random init)."""
    w, b = torch.randn(2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).tolist()
    return w, b


@dataclass(frozen=True)
class Record:
    """What the first loop prints after each step: epoch, sample, loss, W, b."""

    epoch: int
    sample: int
    loss: float
    weight: float
    bias: float


def tutorial_first_loop(
    model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, epochs: int = EPOCHS
) -> list[Record]:
    """The tutorial's first loop: per epoch, per sample: zero_grad, loss = (model(xᵢ) − yᵢ)², backward, step."""
    records = []
    for epoch in range(epochs):
        for i in range(len(x)):
            optimizer.zero_grad()
            output = model(x[i])
            loss = (output - y[i]) ** 2
            loss.backward()
            optimizer.step()
            records.append(Record(epoch, i, loss.item(), model.weight.item(), model.bias.item()))
    return records


def tutorial_micro_batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int = BATCH_SIZE
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """x_train[i:i + batch_size], y_train[i:i + batch_size] for i = 0, batch_size, …: the tutorial's micro-batches."""
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)]


def tutorial_second_loop(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    micro_batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    accumulation_steps: int,
) -> None:
    """One epoch of the tutorial's accumulation loop: Σⱼ ∇(mean loss of micro-batch j), no 1/k; a short last window is never stepped."""
    optimizer.zero_grad()
    for i, (x, y) in enumerate(micro_batches):
        loss = loss_fn(model(x), y)
        loss.backward()
        if (i + 1) % accumulation_steps == 0:
            optimizer.step()
            optimizer.zero_grad()


def tutorial_second_run(
    model: nn.Module, micro_batches, accumulation_steps: int = ACCUMULATION_STEPS, lr: float = LR, epochs: int = EPOCHS
) -> None:
    """The tutorial's whole second run: SGD(lr) and nn.MSELoss over `epochs` epochs of the second loop."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(epochs):
        tutorial_second_loop(model, optimizer, micro_batches, nn.MSELoss(), accumulation_steps)


def first_loop_closed_form(weight: float, bias: float, x, y, lr: float = LR, epochs: int = EPOCHS) -> list[R.LinearParams]:
    """w ← w − η·2(wxᵢ + b − yᵢ)xᵢ, b ← b − η·2(wxᵢ + b − yᵢ), sample after sample: θ after every step."""
    start = R.LinearParams(np.array([[weight]], dtype=np.float64), np.array([bias], dtype=np.float64))
    steps = [[(x[i : i + 1], y[i : i + 1])] for _ in range(epochs) for i in range(len(x))]
    return R.linear_sgd_trajectory(start, steps, lr, lambda p, xb, yb: R.mse_gradients(p, xb, yb, reduction="sum"))


def second_loop_closed_form(
    start: R.LinearParams, micro_batches, accumulation_steps: int, lr: float = LR, epochs: int = EPOCHS
) -> list[R.LinearParams]:
    """What the second loop computes: per full window θ ← θ − η·Σⱼ (2/m)Σ(ŷᵢ − yᵢ)xᵢ (the tutorial's ∇W_accumulated); short windows dropped."""
    windows = windows_of(micro_batches, accumulation_steps, keep_short=False) * epochs
    return R.linear_sgd_trajectory(start, windows, lr, R.mse_gradients)


def window_mean_closed_form(
    start: R.LinearParams, micro_batches, accumulation_steps: int, lr: float = LR, epochs: int = EPOCHS
) -> list[R.LinearParams]:
    """What full-batch training on each window does: θ ← θ − η·∇(mean loss over the window's rows); short windows stepped."""
    windows = [[R.concatenated(w)] for w in windows_of(micro_batches, accumulation_steps, keep_short=True)] * epochs
    return R.linear_sgd_trajectory(start, windows, lr, R.mse_gradients)
