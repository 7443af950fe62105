"""Hypothesis strategies for models, dtypes, batch splits, step counts and whole Cases.

Every argument takes a plain value or a strategy, as in Hypothesis' own `extra` modules.
Few choices are drawn per example; tensor values come from a seeded generator, so a failing
example shrinks to small sizes and seed 0 rather than to a soup of floats.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional, Sequence, TypeVar, Union

import torch
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.strategies import SearchStrategy

from properties.case import Case
from properties.lazy import lazy_strategy
from properties.models import ACTIVATIONS, KINDS, LAYOUTS, ModelSpec

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


def drawn_integer(draw, name: str, value: ValueOrStrategy[int], *, at_least: int) -> int:
    """The argument's value, drawn when it is a strategy, and checked as a plain value is: InvalidArgument otherwise."""
    result = draw(as_strategy(value))
    if isinstance(value, SearchStrategy) and (not isinstance(result, int) or isinstance(result, bool) or result < at_least):
        raise InvalidArgument(f"{name}={value!r} drew {result!r}, which is not an integer ≥ {at_least}")
    return result


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


@lazy_strategy
def dtypes(*, low_precision: bool = True, device: str = "cpu") -> SearchStrategy[torch.dtype]:
    """float64 first (failures shrink to it), then the low-precision dtypes this torch supports on `device`."""
    allowed = [d for d in supported_dtypes(device) if low_precision or d == torch.float64]
    if not allowed:
        raise InvalidArgument(f"this torch runs none of the float dtypes on device={device!r}")
    return st.sampled_from(allowed)


@lazy_strategy
def seeds() -> SearchStrategy[int]:
    """Seeds for tensor values; shrink towards 0."""
    return st.integers(0, 2**16 - 1)


def choice_of(values: ValueOrStrategy[Sequence[T]]) -> SearchStrategy[T]:
    """One element of `values`, or of the sequence a strategy draws."""
    if isinstance(values, SearchStrategy):
        return values.flatmap(lambda drawn: st.sampled_from(tuple(drawn)))
    return st.sampled_from(tuple(values))


LARGE_SHARE = 6
"""One example in LARGE_SHARE draws from the large end of a size range (wide layers, long lists, big micro-batches)."""


def large(draw) -> bool:
    """Whether this draw takes the large end: about 1 in LARGE_SHARE, shrinking towards the small end."""
    return draw(st.integers(0, LARGE_SHARE - 1)) == LARGE_SHARE - 1


@lazy_strategy
def batch_splits(
    *,
    min_k: ValueOrStrategy[int] = 1,
    max_k: ValueOrStrategy[int] = 5,
    max_size: ValueOrStrategy[int] = 3,
    large_size: ValueOrStrategy[int] = 64,
) -> SearchStrategy[tuple[int, ...]]:
    """Sizes (m₁, …, m_k) of k micro-batches, each ≥ 1 and usually unequal; N = Σ mⱼ.

    Most splits have micro-batches of at most `max_size` rows; about one in LARGE_SHARE has
    micro-batches of up to `large_size` rows (pass large_size=max_size for small splits only).
    """
    check_integer("min_k", min_k, at_least=1)
    check_integer("max_k", max_k, at_least=1)
    check_integer("max_size", max_size, at_least=1)
    check_integer("large_size", large_size, at_least=1)
    if isinstance(min_k, int) and isinstance(max_k, int) and max_k < min_k:
        raise InvalidArgument(f"max_k={max_k} is less than min_k={min_k}")
    return _batch_splits(min_k, max_k, max_size, large_size)


@st.composite
def _batch_splits(draw, min_k, max_k, max_size, large_size) -> tuple[int, ...]:
    lo, hi = drawn_integer(draw, "min_k", min_k, at_least=1), drawn_integer(draw, "max_k", max_k, at_least=1)
    if hi < lo:
        raise InvalidArgument(f"max_k={max_k!r} drew {hi}, less than min_k={min_k!r}'s {lo}")
    small = drawn_integer(draw, "max_size", max_size, at_least=1)
    biggest = max(small, drawn_integer(draw, "large_size", large_size, at_least=1)) if large(draw) else small
    return tuple(draw(st.lists(st.integers(1, biggest), min_size=lo, max_size=hi)))


@lazy_strategy
def step_counts(
    *,
    min_value: ValueOrStrategy[int] = 1,
    max_value: ValueOrStrategy[int] = 6,
    large_value: ValueOrStrategy[Optional[int]] = None,
) -> SearchStrategy[int]:
    """How many backward calls, windows or optimizer steps: min…max_value, and min…large_value in one draw in LARGE_SHARE."""
    check_integer("min_value", min_value, at_least=1)
    check_integer("max_value", max_value, at_least=min_value if isinstance(min_value, int) else 1)
    if large_value is not None:
        check_integer("large_value", large_value, at_least=1)
    plain = not any(isinstance(v, SearchStrategy) for v in (min_value, max_value, large_value))
    if plain and (large_value is None or large_value <= max_value):
        return st.integers(min_value, max_value)
    return _step_counts(min_value, max_value, large_value)


@st.composite
def _step_counts(draw, min_value, max_value, large_value) -> int:
    lo, hi = drawn_integer(draw, "min_value", min_value, at_least=1), drawn_integer(draw, "max_value", max_value, at_least=1)
    if hi < lo:
        raise InvalidArgument(f"max_value={max_value!r} drew {hi}, less than min_value={min_value!r}'s {lo}")
    most = None if large_value is None else drawn_integer(draw, "large_value", large_value, at_least=1)
    return draw(st.integers(lo, most if most is not None and most > hi and large(draw) else hi))


@lazy_strategy
def model_specs(
    kinds: ValueOrStrategy[Sequence[str]] = KINDS,
    *,
    max_features: ValueOrStrategy[int] = 4,
    large_features: ValueOrStrategy[int] = 256,
    activations: ValueOrStrategy[Sequence[str]] = tuple(ACTIVATIONS),
    bias: ValueOrStrategy[bool] = st.booleans(),
    sparse: ValueOrStrategy[bool] = st.booleans(),
    frozen: ValueOrStrategy[bool] = False,
    layouts: ValueOrStrategy[Sequence[str]] = LAYOUTS,
) -> SearchStrategy[ModelSpec]:
    """Linear (square ones included), MLPs, tied-weight MLPs, dense or sparse embeddings, deep MLPs, a Conv2d net.

    Most models have at most `max_features` features per layer; about one in LARGE_SHARE is wide
    (up to `large_features` per layer, so a Linear reaches 256×128 = 32,768 weights, the parallel
    grain size; conv channels and filters up to large_features/4); a deep MLP has 9 to 24 layers (18 to 48 tensors
    with biases) in half of the draws and in every large one, else 3 or 4. Parameters are
    stored in the first of `layouts` the model admits in two examples of three, else in another of them.
    With `frozen=True`, a non-empty proper subset of the parameters is frozen (kinds with one
    parameter are then built with a bias so that there is something to freeze).
    """
    check_members("kinds", kinds, KINDS)
    check_members("activations", activations, tuple(ACTIVATIONS))
    check_members("layouts", layouts, LAYOUTS)
    check_integer("max_features", max_features, at_least=1)
    check_integer("large_features", large_features, at_least=1)
    return _model_specs(
        choice_of(kinds),
        as_strategy(max_features),
        as_strategy(large_features),
        choice_of(activations),
        as_strategy(bias),
        as_strategy(sparse),
        as_strategy(frozen),
        as_strategy(layouts),
    )


def admitted_layouts(kind: str, layouts: Sequence[str]) -> list[str]:
    """The layouts among `layouts` a model of `kind` can take, contiguous first (what failures shrink to)."""
    fits = {"embedding": ("contiguous", "transposed", "view"), "conv": LAYOUTS}
    allowed = [layout for layout in layouts if layout in fits.get(kind, ("contiguous", "transposed", "view"))]
    return sorted(allowed or ["contiguous"], key=LAYOUTS.index)


@st.composite
def _model_specs(draw, kinds, max_features, large_features, activations, bias, sparse, frozen, layouts) -> ModelSpec:
    kind = draw(kinds)
    small = draw(max_features)
    big = large(draw)
    widest = max(small, draw(large_features)) if big else small
    width = st.integers(1, widest)
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
    elif kind == "deep":
        long_list = big or draw(st.booleans())  # long parameter lists are where list-chunking kernels change path
        depth = draw(st.integers(9, 24) if long_list else st.integers(3, 4))
        narrow = st.integers(1, max(small, widest // 4))
        spec = ModelSpec(
            "deep", draw(narrow), draw(narrow), hidden=draw(narrow), depth=depth, activation=activation, bias=has_bias
        )
    elif kind == "conv":
        image = draw(st.integers(1, 10 if big else 4))
        kernel = draw(st.integers(1, min(3, image)))
        channels = st.integers(1, max(small, widest // 4))
        spec = ModelSpec(
            "conv",
            draw(channels),
            draw(st.integers(1, small)),
            hidden=draw(channels),
            image=image,
            kernel=kernel,
            activation=activation,
            bias=has_bias,
        )
    else:
        num, dim = draw(st.integers(2, 5 if not big else widest)), draw(width)
        spec = ModelSpec("embedding", num, dim, sparse=draw(sparse), bag=draw(st.integers(1, 3)))
    admitted = admitted_layouts(kind, draw(layouts))
    chosen_layout = draw(st.sampled_from(admitted[1:])) if len(admitted) > 1 and draw(st.integers(0, 2)) == 2 else admitted[0]
    names = spec.parameter_names() if freeze else []
    replaced = {"layout": chosen_layout}
    if len(names) > 1:
        replaced["frozen"] = tuple(sorted(draw(st.sets(st.sampled_from(names), min_size=1, max_size=len(names) - 1))))
    return ModelSpec(**{**spec.__dict__, **replaced})


@lazy_strategy
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
