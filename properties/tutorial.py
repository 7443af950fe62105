"""The tutorial this suite grew from (shared/seeds): its two training loops, as it wrote them."""

from __future__ import annotations

from typing import Callable, Sequence

import torch


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
