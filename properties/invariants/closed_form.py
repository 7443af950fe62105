"""MSE on y = Wx + b in closed form: L, ∂L/∂W = (2/c)·Σ(ŷᵢ − yᵢ)xᵢᵀ, ∂L/∂b = (2/c)·Σ(ŷᵢ − yᵢ) match autograd."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from properties import grads as G
from properties import reference as R
from properties.case import Case
from properties.compare import Tolerance, assert_grads_close, gamma, unit_roundoff
from properties.strategies import batch_splits, cases, model_specs

CASES = cases(models=model_specs(["linear"]), sizes=batch_splits(max_k=3))
SQUARE_OR_MULTI_OUTPUT = cases(
    models=model_specs(["linear"]).filter(lambda s: s.out_features > 1 or s.in_features == s.out_features),
    sizes=batch_splits(max_k=3),
)
REDUCTIONS = st.sampled_from(["mean", "sum"])


def rounding_tolerances(case: Case, magnitudes: dict[str, np.ndarray], terms: int) -> dict[str, Tolerance]:
    """Per parameter: |autograd − closed form| ≤ 2·γₙ·max(magnitude), n = terms (both are float64 sums of that many products)."""
    u = unit_roundoff(case.dtype)
    g = gamma(terms, u)
    return {
        name: Tolerance(
            0.0, 2 * 2 * g * float(np.max(m, initial=0.0)), f"2·γ_{terms}·(2/c)·Σ(|W||x|+|b|+|y|)|x|, u={u:.3g}, both sides"
        )
        for name, m in magnitudes.items()
    }


def terms(case: Case) -> int:
    """Roundings in one gradient element: d_in + 2 for the residual, N for the row sum, 3 for the scale."""
    return case.model.in_features + case.rows + 5


def check_mse_matches_closed_form(case: Case, reduction: str) -> None:
    """nn.MSELoss(reduction) on nn.Linear: the loss and its autograd gradients equal the closed forms."""
    __tracebackhide__ = True
    model = case.build_model()
    x, y = case.full_batch()
    loss = G.mse(model, x, y, reduction=reduction)
    loss.backward()
    value = float(loss.detach())
    p = R.LinearParams.of(model)
    context = f"{case}; nn.MSELoss(reduction={reduction!r}), c = {R.mse_count(R.array(y), reduction)}"
    magnitudes = R.mse_gradient_magnitudes(p, x, y, reduction)
    tolerances = rounding_tolerances(case, magnitudes, terms(case))
    expected_loss = R.mse_value(p, x, y, reduction)
    bound_terms = terms(case) + y.numel()
    loss_bound = 2 * 2 * gamma(bound_terms, unit_roundoff(case.dtype)) * R.mse_value_magnitude(p, x, y, reduction)
    if abs(value - expected_loss) > loss_bound:
        raise AssertionError(
            f"loss value: autograd's {value!r} vs closed form (1/c)·Σ(ŷ − y)² = {expected_loss!r}, "
            f"|difference| {abs(value - expected_loss):.3g} > 2·γ_{bound_terms}·(1/c)·Σ(|W||x|+|b|+|y|)² "
            f"= {loss_bound:.3g}, both sides; actual ≈ {value / (expected_loss or float('nan')):.6g} × expected; case: {context}"
        )
    assert_grads_close(G.grads(model), R.as_tensors(R.mse_gradients(p, x, y, reduction)), tolerance=tolerances, context=context)


def check_tutorial_formulas_match_autograd(case: Case, per_output: bool = True) -> None:
    """Per micro-batch, nn.MSELoss's gradient is the tutorial's ∇W_j = (2/m)·Σ(ŷᵢ − yᵢ)xᵢᵀ divided by d_out; summed over k micro-batches too.

    With `per_output=False` the tutorial's formula is taken literally (no 1/d_out), which is
    right only for one output.
    """
    __tracebackhide__ = True
    model = case.build_model()
    p = R.LinearParams.of(model)
    d_out = case.model.out_features
    divide = d_out if per_output else 1
    formula = "tutorial's (2/m)·Σ(ŷᵢ − yᵢ)xᵢᵀ" + (f" / d_out (= {d_out})" if per_output else " as written")
    batches = case.micro_batches()
    each = []
    for j, (x, y) in enumerate(batches, start=1):
        expected = {name: value / divide for name, value in R.tutorial_gradients(p, x, y).items()}
        each.append(expected)
        magnitudes = R.mse_gradient_magnitudes(p, x, y)
        assert_grads_close(
            G.fresh_gradients(model, G.mse(model, x, y)),
            R.as_tensors(expected),
            tolerance=rounding_tolerances(case, magnitudes, case.model.in_features + len(x) + 5),
            context=f"{case}; micro-batch {j} of {len(batches)} ({len(x)} rows): nn.MSELoss gradient vs the {formula}",
            what="gradient",
        )
    for x, y in batches:
        G.mse(model, x, y).backward()
    magnitudes = R.summed([R.mse_gradient_magnitudes(p, x, y) for x, y in batches])
    assert_grads_close(
        G.grads(model),
        R.as_tensors(R.summed(each)),
        tolerance=rounding_tolerances(case, magnitudes, terms(case) + len(batches)),
        context=f"{case}; .grad after {len(batches)} unscaled backward calls vs Σⱼ of the {formula}",
    )
