"""The assertion layer: tolerances derived per dtype, and comparisons whose failures say what differed."""

from __future__ import annotations

import contextlib
import math
import sys
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

import torch

from properties.case import dtype_name


def unit_roundoff(dtype: torch.dtype) -> float:
    """u = eps/2: the largest relative error of one rounding in `dtype` (2⁻⁵³ for float64)."""
    return torch.finfo(dtype).eps / 2


@dataclass(frozen=True)
class Tolerance:
    """rtol and atol for `torch.testing.assert_close`, with the reason they are what they are."""

    rtol: float
    atol: float
    reason: str
    equal_nan: bool = False

    def __str__(self) -> str:
        return f"atol={self.atol:.3g}, rtol={self.rtol:.3g}{', NaN equals NaN' if self.equal_nan else ''} ({self.reason})"


EXACT = Tolerance(0.0, 0.0, "bitwise identity")


def gamma(n: int, u: float) -> float:
    """Higham's γₙ = n·u/(1 − n·u): the relative error bound of n successive roundings (∞ once n·u ≥ 1)."""
    if n * u >= 1:
        return math.inf
    return n * u / (1 - n * u)


def summation_tolerance(dtype: torch.dtype, terms: int, magnitude: float) -> Tolerance:
    """Higham's bound for a sum of n terms: |fl(Σxᵢ) − Σxᵢ| ≤ γₙ·Σ|xᵢ|, γₙ = n·u/(1 − n·u); 2× slack."""
    u = unit_roundoff(dtype)
    n = max(terms, 1)
    bound = gamma(n, u)
    return Tolerance(
        rtol=2 * bound,
        atol=2 * bound * magnitude,
        reason=f"2·γ_{n}·Σ|terms| with u={u:.3g} ({dtype_name(dtype)}), Σ|terms|≤{magnitude:.3g}",
    )


def dense(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor itself, or its dense form when sparse (duplicates summed)."""
    return tensor.to_dense() if tensor.is_sparse else tensor


def magnitude(*tensors: torch.Tensor | None) -> float:
    """max |x| over the given tensors (None ignored), at least 1e-300 so bounds stay positive."""
    values = [float(dense(t).abs().max()) for t in tensors if t is not None and t.numel()]
    return max(values + [1e-300])


def ratio_hint(actual: torch.Tensor, expected: torch.Tensor) -> str:
    """'actual ≈ 2 × expected' when actual is a consistent multiple of expected (one number: p/q, q ≤ 8); or 'transposed'."""
    a, e = dense(actual).double().flatten(), dense(expected).double().flatten()
    if a.shape != e.shape or not a.numel() or not bool(torch.isfinite(a).all() and torch.isfinite(e).all()):
        return ""
    if actual.dim() == 2 and actual.shape[0] == actual.shape[1] and not torch.equal(actual, actual.T):
        if torch.allclose(dense(actual).double(), dense(expected).double().T, rtol=1e-6, atol=1e-12):
            return "; actual is expected transposed"
    denominator = float(e @ e)
    if denominator == 0.0:
        return "; expected is all zeros" if float(a.abs().max()) > 0 else ""
    ratio = float(a @ e) / denominator
    residual = float((a - ratio * e).norm())
    consistent = a.numel() > 1 or is_simple_fraction(ratio)
    if ratio != 0 and consistent and residual <= 1e-6 * float(a.norm()) and abs(ratio - 1) > 1e-6:
        return f"; actual ≈ {ratio:.6g} × expected"
    return ""


def is_simple_fraction(ratio: float) -> bool:
    """Whether ratio ≈ p/q with q ≤ 8 (so one number's ratio is worth naming)."""
    return any(abs(ratio * q - round(ratio * q)) <= 1e-9 * max(1.0, abs(ratio * q)) for q in range(1, 9))


def describe_difference(actual: torch.Tensor, expected: torch.Tensor) -> str:
    """Largest |actual − expected|, where it is, and the two values there."""
    a, e = dense(actual).double(), dense(expected).double()
    difference = (a - e).abs()
    difference = torch.where(torch.isnan(difference), torch.full_like(difference, float("inf")), difference)
    flat = int(difference.flatten().argmax()) if difference.numel() else 0
    index = tuple(flat // stride % size for stride, size in zip(difference.contiguous().stride(), a.shape))
    return (
        f"largest |actual − expected| = {float(difference.flatten()[flat]):.6g} at index {index} "
        f"(actual {float(a.flatten()[flat]):.17g}, expected {float(e.flatten()[flat]):.17g})"
    )


class ComparisonError(AssertionError):
    """A numeric comparison failed: `.parameter` names what differed, `.ratio` its error ÷ tolerance, `.tolerance` the bound.

    `.ratio` is None when the shapes differ (no element-wise ratio exists); `.bitwise` when the bound is exact.
    """

    def __init__(self, message: str, *, parameter: str, ratio: float | None, tolerance: Tolerance):
        super().__init__(message)
        self.parameter = parameter
        self.ratio = ratio
        self.tolerance = tolerance

    @property
    def bitwise(self) -> bool:
        """Whether the bound broken was bitwise identity (atol = rtol = 0)."""
        return self.tolerance.atol == 0 and self.tolerance.rtol == 0

    def with_message(self, message: str) -> "ComparisonError":
        """The same failure (parameter, ratio, tolerance) with another message."""
        return ComparisonError(message, parameter=self.parameter, ratio=self.ratio, tolerance=self.tolerance)


Observer = Callable[[str, float, Tolerance], None]
_OBSERVERS: list[Observer] = []


@contextlib.contextmanager
def observing(observer: Observer) -> Iterator[None]:
    """Within the block, call observer(name, excess, tolerance) for every comparison `assert_tensor_close` makes."""
    _OBSERVERS.append(observer)
    try:
        yield
    finally:
        _OBSERVERS.remove(observer)


@contextlib.contextmanager
def targeting(label: str) -> Iterator[None]:
    """Within the block, collect every comparison's error ÷ tolerance; at its end, inside a Hypothesis test, report
    the largest finite one as `hypothesis.target(…, label=label)` (once per example, so Hypothesis climbs toward the bound)."""
    ratios: list[float] = []
    with observing(lambda name, ratio, tolerance: ratios.append(ratio)):
        yield
    finite = [r for r in ratios if math.isfinite(r)]
    if finite:
        report_target(max(finite), label)


def report_target(ratio: float, label: str) -> None:
    """hypothesis.target(ratio, label=label) when called inside a Hypothesis test; nothing outside one."""
    from hypothesis import currently_in_test_context, target

    if currently_in_test_context():
        target(min(ratio, sys.float_info.max), label=label)


def excess(actual: torch.Tensor, expected: torch.Tensor, tolerance: Tolerance) -> float:
    """max |a − e| / (atol + rtol·|e|): ≤ 1 within the tolerance, > 1 outside it (0/0 = 0, x/0 = ∞, NaN = ∞)."""
    a, e = dense(actual).double(), dense(expected).double()
    if a.shape != e.shape:
        return math.inf
    if not a.numel():
        return 0.0
    difference = (a - e).abs()
    allowed = tolerance.atol + tolerance.rtol * e.abs()
    same = (a == e) | (torch.isnan(a) & torch.isnan(e))
    ratio = torch.where(same, torch.zeros_like(difference), difference / allowed)
    ratio = torch.where(torch.isnan(ratio), torch.full_like(ratio, math.inf), ratio)
    return float(ratio.max())


def assert_tensor_close(actual, expected, *, name: str, tolerance: Tolerance, context: str = "") -> None:
    """torch.testing.assert_close(actual, expected) with a message naming the parameter, difference and case."""
    __tracebackhide__ = True
    actual, expected = dense(actual), dense(expected)
    same_shape = actual.shape == expected.shape
    if _OBSERVERS:
        observed = excess(actual, expected, tolerance)
        for observer in list(_OBSERVERS):
            observer(name, observed, tolerance)

    def message(default: str) -> str:
        lines = [
            f"{name}: {tuple(expected.shape)} {dtype_name(expected.dtype)} differs",
            f"  {describe_difference(actual, expected)}{ratio_hint(actual, expected)}" if same_shape else "",
            f"  tolerance: {tolerance}",
            f"  error ÷ tolerance = {excess(actual, expected, tolerance):.3g}" if same_shape else "",
            f"  case: {context}" if context else "",
            "  torch says: " + default.replace("\n", "\n    "),
        ]
        return "\n".join(line for line in lines if line)

    try:
        torch.testing.assert_close(
            actual, expected, rtol=tolerance.rtol, atol=tolerance.atol, equal_nan=tolerance.equal_nan, msg=message
        )
    except AssertionError as error:
        ratio = excess(actual, expected, tolerance) if same_shape else None
        raise ComparisonError(str(error), parameter=name, ratio=ratio, tolerance=tolerance) from None


def assert_grads_close(
    actual: Mapping[str, torch.Tensor | None],
    expected: Mapping[str, torch.Tensor | None],
    *,
    tolerance: Tolerance | Mapping[str, Tolerance],
    context: str = "",
    what: str = ".grad",
) -> None:
    """Per parameter: both None, or both tensors within tolerance; otherwise fail naming the parameter."""
    __tracebackhide__ = True
    if set(actual) != set(expected):
        raise AssertionError(f"parameters differ: {sorted(actual)} vs {sorted(expected)}; case: {context}")
    for name in expected:
        a, e = actual[name], expected[name]
        if a is None or e is None:
            if a is not e:
                got = "None" if a is None else f"a tensor (max |value| {magnitude(a):.3g})"
                want = "None" if e is None else f"a tensor (max |value| {magnitude(e):.3g})"
                raise AssertionError(f"{what} of {name!r}: expected {want}, got {got}; case: {context}")
            continue
        tol = tolerance if isinstance(tolerance, Tolerance) else tolerance[name]
        try:
            assert_tensor_close(a, e, name=f"{what} of {name!r}", tolerance=tol, context=context)
        except ComparisonError as error:
            hint = ratio_hint(*(flat_concatenation(grads) for grads in (actual, expected)))
            raise (error.with_message(f"{error}\n  over all parameters{hint}") if hint else error) from None


def flat_concatenation(grads: Mapping[str, torch.Tensor | None]) -> torch.Tensor:
    """Every non-None tensor in the mapping, densified, flattened and concatenated in float64."""
    parts = [dense(t).double().flatten() for t in grads.values() if t is not None]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)
