"""One process, the whole batch: the gradient and SGD step the W ranks must reproduce, and the bounds they are held to."""

from __future__ import annotations

import torch

from properties import bounds
from properties import grads as G
from properties.compare import Tolerance, unit_roundoff
from properties.distributed.cases import DistributedCase


def full_batch_gradient(case: DistributedCase) -> G.GradMap:
    """∇L with L = mean over all N rows (and outputs) of the squared error, in one process."""
    model = case.case.build_model()
    x, y = case.case.full_batch()
    return G.fresh_gradients(model, G.mse(model, x, y))


def local_terms(case: DistributedCase, rank: int, count: int) -> list[G.GradMap]:
    """w_rj·∇L_rj for rank r's first `count` micro-batches, in order: what its backward calls add to .grad."""
    model = case.case.build_model()
    return [
        G.fresh_gradients(model, weight * G.mse(model, x, y))
        for (x, y), weight in list(zip(case.rank_batches(rank), case.weights(rank)))[:count]
    ]


def full_batch_step(case: DistributedCase) -> dict[str, torch.Tensor]:
    """θ − lr·∇L: torch.optim.SGD's step on the full-batch gradient, in one process."""
    model = case.case.build_model()
    gradient = full_batch_gradient(case)
    for name, parameter in model.named_parameters():
        parameter.grad = gradient[name]
    torch.optim.SGD(model.parameters(), lr=case.lr).step()
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def gradient_tolerances(case: DistributedCase) -> dict[str, Tolerance]:
    """Per parameter, 2·γ_K·M for the mean loss over all N rows (`properties.bounds`), plus the window's own roundings.

    Each rank sums k weighted micro-batch gradients (weights W·m_rj/N rounded), the all-reduce
    sums W of them and divides by W: k + W + 6 roundings on top of the replayed gradient's K.
    """
    model = case.case.build_model()
    bound = bounds.window_bound(case.case.model, model, case.case.micro_batches(), case.case.dtype)
    return bound.tolerances(bounds.accumulation_roundings(case.k) + case.world_size + 2)


def step_tolerances(case: DistributedCase) -> dict[str, Tolerance]:
    """θ − lr·g: lr times the gradient's bound, plus one rounding of the subtraction (2u·max|θ|)."""
    model = case.case.build_model()
    u = unit_roundoff(case.case.dtype)
    result = {}
    for name, tolerance in gradient_tolerances(case).items():
        theta = float(dict(model.named_parameters())[name].detach().abs().max())
        result[name] = Tolerance(
            rtol=tolerance.rtol,
            atol=case.lr * tolerance.atol + 2 * u * theta,
            reason=f"lr·({tolerance.reason}) + 2u·max|θ|, max|θ|={theta:.3g}",
        )
    return result
