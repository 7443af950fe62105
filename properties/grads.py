"""Gradient helpers: losses, snapshots of `.grad`, and fresh gradients that leave `.grad` alone."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

GradMap = dict[str, "torch.Tensor | None"]


def mse(model: nn.Module, x: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """L = (1/N)·Σ‖model(xᵢ) − yᵢ‖² over all elements (or the plain sum with reduction='sum')."""
    return nn.functional.mse_loss(model(x), y, reduction=reduction)


def trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) for every parameter that requires grad."""
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def grads(model: nn.Module) -> GradMap:
    """A copy of every parameter's `.grad` (None stays None)."""
    return {name: None if p.grad is None else p.grad.detach().clone() for name, p in model.named_parameters()}


def fresh_gradients(model: nn.Module, loss: torch.Tensor, *, retain_graph: bool = False) -> GradMap:
    """∂loss/∂θ for every parameter via torch.autograd.grad (`.grad` untouched); None where frozen or unused."""
    named = trainable(model)
    computed = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True, retain_graph=retain_graph) if named else ()
    result: GradMap = {name: None for name, _ in model.named_parameters()}
    result.update({name: g for (name, _), g in zip(named, computed)})
    return result


def combine(maps: Iterable[GradMap]) -> GradMap:
    """Σⱼ gⱼ per parameter (sparse ones densified), in order; None where every gⱼ is None."""
    total: GradMap = {}
    for grad_map in maps:
        for name, g in grad_map.items():
            term = None if g is None else (g.to_dense() if g.is_sparse else g)
            previous = total.get(name)
            total[name] = term if previous is None else (previous if term is None else previous + term)
    return total


def finite(*maps: GradMap) -> bool:
    """Whether every tensor in the maps is finite (None entries count as finite)."""
    for tensors in maps:
        for t in tensors.values():
            if t is not None and not bool(torch.isfinite(t.to_dense() if t.is_sparse else t).all()):
                return False
    return True
