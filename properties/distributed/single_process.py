"""One process, the whole batch: the gradient and SGD step the W ranks must reproduce, and the bounds they are held to."""

from __future__ import annotations

import torch

from properties import bounds
from properties import grads as G
from properties.compare import Tolerance, unit_roundoff
from properties.distributed import options as O
from properties.distributed.cases import DistributedCase


def extra_rows(case: DistributedCase) -> torch.Tensor:
    """A (N, 1) 0/1 column marking the rows of the micro-batches that use the parameter `extra`."""
    marks = [float(j in case.options.extra_in) for j, m in enumerate(case.case.sizes) for _ in range(m)]
    return torch.tensor(marks, dtype=case.case.dtype).unsqueeze(1)


def full_batch_gradient(case: DistributedCase) -> G.GradMap:
    """∇L with L = mean over all N rows (and outputs) of the squared error, in one process (extra added where used)."""
    model = O.build(case.case, case.options)
    x, y = case.case.full_batch()
    prediction = model(x, extra_rows(case)) if case.options.wrapped else model(x)
    return G.fresh_gradients(model, torch.nn.functional.mse_loss(prediction, y))


def local_terms(case: DistributedCase, rank: int, count: int) -> list[G.GradMap]:
    """w_rj·∇L_rj for rank r's first `count` micro-batches, in order: what its backward calls add to .grad."""
    model = O.build(case.case, case.options)
    terms = []
    for (x, y), weight, use in list(zip(case.rank_batches(rank), case.weights(rank), case.rank_uses_extra(rank)))[:count]:
        prediction = model(x, use) if case.options.wrapped else model(x)
        terms.append(G.fresh_gradients(model, weight * torch.nn.functional.mse_loss(prediction, y)))
    return terms


def full_batch_step(case: DistributedCase) -> dict[str, torch.Tensor]:
    """θ − lr·∇L: torch.optim.SGD's step on the full-batch gradient, in one process."""
    model = O.build(case.case, case.options)
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
    x, y = case.case.full_batch()
    roundings = bounds.accumulation_roundings(case.k) + case.world_size + 2
    return replayed_tolerances(case, x, y, extra_rows(case), y.numel(), roundings)


def local_tolerances(case: DistributedCase, rank: int, count: int) -> dict[str, Tolerance]:
    """Per parameter, 2·γ_K·M for rank r's Σ_{j<count} w_rj·∇L_rj, plus the accumulation's roundings.

    Σ_j w_rj·∇L_rj = (W/N)·Σ_j Σ_rows ∂ℓ/∂θ / d_out: the gradient of the squared errors over those rows
    with count N·d_out/W, replayed on magnitudes (`properties.bounds`). The rank computes each term
    in its own process, the reference in this one: the same sums, but a matrix product may block
    them differently (threads, sizes), so each term carries its own 2·γ_K·M, not only the order of
    the sum of terms.
    """
    batches = case.rank_batches(rank)[:count]
    x, y = torch.cat([xb for xb, _ in batches]), torch.cat([yb for _, yb in batches])
    uses = case.rank_uses_extra(rank)[:count]
    marks = torch.tensor([[float(use)] for use, (xb, _) in zip(uses, batches) for _ in range(len(xb))], dtype=x.dtype)
    scaled = case.case.full_batch()[1].numel() / case.world_size
    return replayed_tolerances(case, x, y, marks, scaled, bounds.accumulation_roundings(count) + 2)


def replayed_tolerances(
    case: DistributedCase, x: torch.Tensor, y: torch.Tensor, marks: torch.Tensor, count: float, roundings: int
) -> dict[str, Tolerance]:
    """2·γ_{K+roundings}·M per parameter of ∂/∂θ (1/count)·Σ‖model(x) − y‖² (and of `extra` on the rows `marks` flags)."""
    model = case.case.build_model()
    bound = bounds.mse_gradient_bound(case.case.model, model, x, y, count=count, dtype=case.case.dtype)
    if not case.options.wrapped:
        return bound.tolerances(roundings)
    tolerances = {f"model.{name}": tolerance for name, tolerance in bound.tolerances(roundings).items()}
    if case.options.extra_in:
        tolerances["extra"] = extra_bound(case, model, x, y, marks, count).tolerance("extra", roundings)
    return tolerances


def extra_bound(
    case: DistributedCase, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, marks: torch.Tensor, count: float
) -> bounds.Bound:
    """∂/∂extra of (1/count)·Σ squared errors = Σ over the rows `marks` flags (a 0/1 column) of ∂/∂ŷ: the replayed
    ∂/∂ŷ (extra = 0 leaves ŷ = model(x)), summed over those rows."""
    replay = bounds.Replay(case.case.dtype)
    prediction, _ = bounds.model_outputs(case.case.model, model, x, replay)
    delta = replay.mse_delta(prediction, replay.exact(y), count)
    mask = marks.to(torch.float64)
    used = replay.total(bounds.Mag(delta.value * mask, delta.size * mask, delta.depth), 0)
    return bounds.Bound({"extra": used.size}, {"extra": used.depth}, case.case.dtype)


def step_tolerances(case: DistributedCase) -> dict[str, Tolerance]:
    """θ − lr·g: lr times the gradient's bound, plus one rounding of the subtraction (2u·max|θ|)."""
    model = O.build(case.case, case.options)
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
