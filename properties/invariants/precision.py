"""Low precision: the accumulated gradient in float32/float16/bfloat16 stays within a derived rounding bound of float64.

For y = Wx + b and the mean MSE over N rows and d_out outputs, every term of
∂L/∂W = (2/(N·d_out))·Σᵢ rᵢxᵢᵀ passes through at most n = d_in + max mⱼ + k + 8 roundings
(d_in + 2 for the residual rᵢ = Wxᵢ + b − yᵢ, up to 5 for the loss scale mⱼ/N and the MSE backward,
mⱼ for the sum over a micro-batch's rows, k − 1 for accumulating into .grad), so Higham's
lemma gives |Ĝ − G| ≤ γₙ·(2/(N·d_out))·Σᵢ aᵢ|xᵢ|ᵀ with aᵢ = |W||xᵢ| + |b| + |yᵢ| ≥ |rᵢ|,
γₙ = n·u/(1 − n·u) and u = eps/2 the dtype's unit roundoff: 2⁻²⁴ for float32 (eps 1.19e-7),
2⁻¹¹ for float16 (eps 9.77e-4), 2⁻⁸ for bfloat16 (eps 7.81e-3). The bound grows with k:
each micro-batch adds one more rounding to every term. Gradual underflow adds at most half the
smallest subnormal per rounding; the check allows n·N of them. The float64 reference is the
closed form on the same (exactly representable) inputs and parameters.
"""

from __future__ import annotations

import numpy as np
import torch

from properties import accumulate as A
from properties import grads as G
from properties import reference as R
from properties.case import Case, dtype_name
from properties.compare import Tolerance, assert_grads_close, gamma, unit_roundoff
from properties.strategies import batch_splits, cases, model_specs, supported_dtypes

DTYPES = supported_dtypes()
CASES = {dtype: cases(models=model_specs(["linear"]), sizes=batch_splits(max_k=6), dtype=dtype) for dtype in DTYPES}
FLOAT32_CASES = cases(models=model_specs(["linear"]), sizes=batch_splits(min_k=2, max_k=6), dtype=torch.float32)


def roundings(case: Case) -> int:
    """n = d_in + max mⱼ + k + 8: the most roundings any term of the accumulated gradient goes through."""
    return case.model.in_features + max(case.sizes) + len(case.sizes) + 8


def accumulation_bounds(case: Case, p: R.LinearParams, x: torch.Tensor, y: torch.Tensor) -> dict[str, Tolerance]:
    """Per parameter: atol = 2·γₙ·max((2/(N·d_out))·Σᵢ aᵢ|xᵢ|) + n·N·(smallest subnormal), rtol 0; 2× slack."""
    n, u = roundings(case), unit_roundoff(case.dtype)
    info = torch.finfo(case.dtype)
    subnormal = info.tiny * info.eps
    g = gamma(n, u)
    magnitudes = R.mse_gradient_magnitudes(p, x, y)
    return {
        name: Tolerance(
            0.0,
            2 * g * float(np.max(m)) + n * case.rows * subnormal,
            f"2·γ_{n}·max (2/(N·d_out))·Σ(|W||x|+|b|+|y|)|x| = 2·{g:.3g}·{float(np.max(m)):.3g}, "
            f"u = eps/2 = {u:.3g} ({dtype_name(case.dtype)} eps {info.eps:.3g}), n = d_in + max m + k + 8",
        )
        for name, m in magnitudes.items()
    }


def check_accumulated_gradient_within_rounding_bound(case: Case) -> None:
    """Scaled micro-batch accumulation in the case's dtype is within γₙ·(magnitudes) of the float64 closed form."""
    __tracebackhide__ = True
    model = case.build_model()
    batches = case.micro_batches()
    A.accumulate(model, batches, A.SCALED_MEANS)
    p = R.LinearParams.of(model)
    x, y = R.concatenated(batches)
    actual = {name: None if g is None else g.to(torch.float64) for name, g in G.grads(model).items()}
    assert_grads_close(
        actual,
        R.as_tensors(R.mse_gradients(p, x, y)),
        tolerance=accumulation_bounds(case, p, x, y),
        context=f"{case}; {len(batches)} scaled micro-batch backward calls in {dtype_name(case.dtype)} vs the float64 closed form",
    )
