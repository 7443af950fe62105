"""One process, the whole batch: the gradient and SGD step the W ranks must reproduce, and the bounds they are held to."""

from __future__ import annotations

import torch

from properties import grads as G
from properties.compare import Tolerance, summation_tolerance, unit_roundoff
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


def window_terms(case: DistributedCase) -> int:
    """n for Higham's bound: N rows, k micro-batches, W ranks, the weight and the 1/W, and the longest dot product."""
    spec = case.case.model
    return case.rows + case.k + case.world_size + 2 + spec.in_features + spec.hidden + spec.out_features


def row_magnitudes(case: DistributedCase) -> dict[str, float]:
    """max over entries of Σᵢ |∇ℓᵢ|/N: the size of the N per-row terms whose sum is ∇L (cancellation included)."""
    model = case.case.build_model()
    x, y = case.case.full_batch()
    rows = [G.fresh_gradients(model, G.mse(model, x[i : i + 1], y[i : i + 1]) / case.rows) for i in range(case.rows)]
    return G.largest(G.combine(rows, torch.abs))


def gradient_tolerances(case: DistributedCase) -> dict[str, Tolerance]:
    """Per parameter: 2·γₙ·Σᵢ|∇ℓᵢ|/N, n = window_terms — every rounding between one row's term and the averaged total."""
    n = window_terms(case)
    return {name: summation_tolerance(case.case.dtype, n, m) for name, m in row_magnitudes(case).items()}


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
