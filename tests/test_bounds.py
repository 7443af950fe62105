"""The replayed bounds are sound: a gradient computed in any dtype lies within γ_K·M of the exact one (float64 stands in)."""

import torch
from hypothesis import given

from properties import bounds
from properties import grads as G
from properties.case import Case
from properties.compare import gamma, unit_roundoff
from properties.strategies import cases, dtypes, model_specs

LOW_PRECISION_CASES = cases(models=model_specs(sparse=False), dtype=dtypes().filter(lambda d: d != torch.float64))


def exact_gradient(case: Case, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> G.GradMap:
    """The mean-MSE gradient of the same stored parameters and data, in float64 (exact to ~1e-16 relative)."""
    wide = case.model.build(dtype=torch.float64, device="cpu", seed=case.seed)
    with torch.no_grad():
        for (_, p), (_, q) in zip(wide.named_parameters(), model.named_parameters()):
            p.copy_(q.double())
    x = x if case.model.takes_indices else x.double()
    return G.fresh_gradients(wide, G.mse(wide, x, y.double()))


@given(case=LOW_PRECISION_CASES)
def test_a_low_precision_gradient_lies_within_gamma_k_times_the_replayed_magnitude_of_the_exact_one(case):
    model = case.build_model()
    x, y = case.full_batch()
    computed = G.fresh_gradients(model, G.mse(model, x, y))
    exact = exact_gradient(case, model, x, y)
    bound = bounds.mse_gradient_bound(case.model, model, x, y, count=y.numel(), dtype=case.dtype)
    for name, g in computed.items():
        if g is None:
            continue
        depth, size = bound.depths[name], bound.sizes[name]
        allowed = gamma(depth, unit_roundoff(case.dtype)) * size + gamma(depth, unit_roundoff(torch.float64)) * size
        error = (g.double() - exact[name]).abs()
        worst = float((error / allowed).max())
        assert worst <= 1, f"{case}: {name} off by {worst:.3g} × γ_{depth}·M (error {float(error.max()):.3g})"


@given(case=cases(models=model_specs(sparse=False)))
def test_the_replayed_magnitude_bounds_the_gradient_itself(case):
    model = case.build_model()
    x, y = case.full_batch()
    exact = G.fresh_gradients(model, G.mse(model, x, y))
    bound = bounds.mse_gradient_bound(case.model, model, x, y, count=y.numel(), dtype=case.dtype)
    for name, g in exact.items():
        if g is not None:
            assert bool((g.abs() <= bound.sizes[name] * (1 + 1e-12)).all()), f"{case}: M < |g| for {name}"
