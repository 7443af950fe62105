"""Hypothesis strategies for models, dtypes, batch splits, step counts and whole Cases.

Every argument takes a plain value or a strategy, as in Hypothesis' own `extra` modules.
Few choices are drawn per example; tensor values come from a seeded generator, so a failing
example shrinks to small sizes and seed 0 rather than to a soup of floats.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence, TypeVar, Union

import torch
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.strategies import SearchStrategy

from properties.case import Case
from properties.models import ACTIVATIONS, KINDS, ModelSpec

T = TypeVar("T")
ValueOrStrategy = Union[T, SearchStrategy[T]]

FLOAT_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


def check_integer(name: str, value, *, at_least: int) -> None:
    """InvalidArgument unless a plain `value` is an int ≥ at_least (a strategy is checked when it draws)."""
    if isinstance(value, SearchStrategy):
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < at_least:
        raise InvalidArgument(f"{name}={value!r} must be an integer ≥ {at_least}")


def check_members(name: str, values, allowed: Sequence) -> None:
    """InvalidArgument unless every element of a plain, non-empty `values` is one of `allowed`."""
    if isinstance(values, SearchStrategy):
        return
    if isinstance(values, str) or not len(values):
        raise InvalidArgument(f"{name}={values!r} must be a non-empty sequence drawn from {list(allowed)}")
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise InvalidArgument(f"{name} has unknown values {unknown}; expected some of {list(allowed)}")


def as_strategy(value: ValueOrStrategy[T]) -> SearchStrategy[T]:
    """A strategy as it is; a plain value as `st.just(value)`."""
    return value if isinstance(value, SearchStrategy) else st.just(value)


@lru_cache(maxsize=None)
def supported_dtypes(device: str = "cpu") -> tuple[torch.dtype, ...]:
    """Float dtypes in which this torch can run a Linear, tanh and MSE backward on `device`."""
    supported = []
    for dtype in FLOAT_DTYPES:
        try:
            weight = torch.ones(2, 2, dtype=dtype, device=device, requires_grad=True)
            x = torch.ones(3, 2, dtype=dtype, device=device)
            torch.nn.functional.mse_loss(torch.tanh(x @ weight.T), x).backward()
            supported.append(dtype)
        except RuntimeError:
            continue
    return tuple(supported)


@lru_cache(maxsize=None)
def sparse_accumulation_supported(dtype: torch.dtype, device: str = "cpu") -> bool:
    """Whether two sparse embedding gradients in `dtype` can be accumulated into one .grad on `device`."""
    try:
        weight = torch.zeros(2, 1, dtype=dtype, device=device, requires_grad=True)
        for _ in range(2):
            torch.nn.functional.embedding(torch.tensor([0, 1], device=device), weight, sparse=True).sum().backward()
        return True
    except (RuntimeError, NotImplementedError):
        return False


def runnable(case: Case) -> bool:
    """Whether this torch implements everything the case needs (sparse half accumulation is missing on CPU)."""
    if case.model.kind == "embedding" and case.model.sparse:
        return sparse_accumulation_supported(case.dtype, case.device)
    return True


def dtypes(*, low_precision: bool = True, device: str = "cpu") -> SearchStrategy[torch.dtype]:
    """float64 first (failures shrink to it), then the low-precision dtypes this torch supports on `device`."""
    allowed = [d for d in supported_dtypes(device) if low_precision or d == torch.float64]
    if not allowed:
        raise InvalidArgument(f"this torch runs none of the float dtypes on device={device!r}")
    return st.sampled_from(allowed)


def seeds() -> SearchStrategy[int]:
    """Seeds for tensor values; shrink towards 0."""
    return st.integers(0, 2**16 - 1)


def choice_of(values: ValueOrStrategy[Sequence[T]]) -> SearchStrategy[T]:
    """One element of `values`, or of the sequence a strategy draws."""
    if isinstance(values, SearchStrategy):
        return values.flatmap(lambda drawn: st.sampled_from(tuple(drawn)))
    return st.sampled_from(tuple(values))


def batch_splits(
    *, min_k: ValueOrStrategy[int] = 1, max_k: ValueOrStrategy[int] = 5, max_size: ValueOrStrategy[int] = 3
) -> SearchStrategy[tuple[int, ...]]:
    """Sizes (m₁, …, m_k) of k micro-batches, each ≥ 1 and usually unequal; N = Σ mⱼ."""
    check_integer("min_k", min_k, at_least=1)
    check_integer("max_k", max_k, at_least=1)
    check_integer("max_size", max_size, at_least=1)
    if isinstance(min_k, int) and isinstance(max_k, int) and max_k < min_k:
        raise InvalidArgument(f"max_k={max_k} is less than min_k={min_k}")

    def split(lo: int, hi: int, size: int) -> SearchStrategy[tuple[int, ...]]:
        return st.lists(st.integers(1, size), min_size=lo, max_size=max(lo, hi)).map(tuple)

    if not any(isinstance(arg, SearchStrategy) for arg in (min_k, max_k, max_size)):
        return split(min_k, max_k, max_size)  # built once: most callers pass plain values
    return st.tuples(as_strategy(min_k), as_strategy(max_k), as_strategy(max_size)).flatmap(lambda a: split(*a))


def step_counts(*, min_value: int = 1, max_value: int = 6) -> SearchStrategy[int]:
    """How many backward calls or windows; with the defaults, three or more in most examples."""
    check_integer("min_value", min_value, at_least=1)
    check_integer("max_value", max_value, at_least=min_value)
    return st.integers(min_value, max_value)


def model_specs(
    kinds: ValueOrStrategy[Sequence[str]] = KINDS,
    *,
    max_features: ValueOrStrategy[int] = 4,
    activations: ValueOrStrategy[Sequence[str]] = tuple(ACTIVATIONS),
    bias: ValueOrStrategy[bool] = st.booleans(),
    sparse: ValueOrStrategy[bool] = st.booleans(),
    frozen: ValueOrStrategy[bool] = False,
) -> SearchStrategy[ModelSpec]:
    """Linear (square ones included), MLPs with smooth activations, tied-weight MLPs, dense or sparse embeddings.

    With `frozen=True`, a non-empty proper subset of the parameters is frozen (kinds with one
    parameter are then built with a bias so that there is something to freeze).
    """
    check_members("kinds", kinds, KINDS)
    check_members("activations", activations, tuple(ACTIVATIONS))
    check_integer("max_features", max_features, at_least=1)
    widths = None if isinstance(max_features, SearchStrategy) else st.integers(1, max_features)
    return _model_specs(
        choice_of(kinds),
        widths,
        as_strategy(max_features),
        choice_of(activations),
        as_strategy(bias),
        as_strategy(sparse),
        as_strategy(frozen),
    )


@st.composite
def _model_specs(draw, kinds, widths, max_features, activations, bias, sparse, frozen) -> ModelSpec:
    kind = draw(kinds)
    width = widths if widths is not None else st.integers(1, draw(max_features))
    freeze = draw(frozen)
    has_bias = True if freeze and kind != "embedding" else draw(bias)
    activation = draw(activations)
    if kind == "linear":
        spec = ModelSpec("linear", draw(width), draw(width), bias=has_bias)
    elif kind == "mlp":
        spec = ModelSpec("mlp", draw(width), draw(width), hidden=draw(width), activation=activation, bias=has_bias)
    elif kind == "tied":
        features = draw(width)
        spec = ModelSpec("tied", features, features, activation=activation, bias=has_bias)
    else:
        num, dim = draw(st.integers(2, 5)), draw(width)
        spec = ModelSpec("embedding", num, dim, sparse=draw(sparse), bag=draw(st.integers(1, 3)))
    names = spec.parameter_names() if freeze else []
    if len(names) > 1:
        chosen = draw(st.sets(st.sampled_from(names), min_size=1, max_size=len(names) - 1))
        spec = ModelSpec(**{**spec.__dict__, "frozen": tuple(sorted(chosen))})
    return spec


def cases(
    *,
    models: ValueOrStrategy[ModelSpec] = model_specs(),
    sizes: ValueOrStrategy[tuple[int, ...]] = batch_splits(),
    dtype: ValueOrStrategy[torch.dtype] = torch.float64,
    seed: ValueOrStrategy[int] = seeds(),
    device: ValueOrStrategy[str] = "cpu",
) -> SearchStrategy[Case]:
    """Whole examples: a model, its micro-batch sizes, a dtype, a seed and a device."""
    return st.builds(
        Case,
        model=as_strategy(models),
        sizes=as_strategy(sizes),
        dtype=as_strategy(dtype),
        seed=as_strategy(seed),
        device=as_strategy(device),
    ).filter(runnable)
