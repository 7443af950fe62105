"""The user's model, data and loss as a recipe example: factory() under torch.manual_seed(seed), dataset (x, y) cut into micro-batches."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Callable

import torch
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from properties.case import dtype_name
from properties.recipes import batches
from properties.recipes.losses import RecipeLoss
from properties.recipes.outputs import OutputLoss, call_model, loss_input

ELEMENTARY_ROUNDINGS = 8


def describe(factory: Callable) -> str:
    """A factory's name: its repr when it defines one, else module.qualname."""
    if isinstance(factory, type) or hasattr(factory, "__code__") or type(factory).__repr__ is object.__repr__:
        qualname = getattr(factory, "__qualname__", None) or type(factory).__name__
        return f"{qualname}()"
    return repr(factory)


def check_factory(factory) -> None:
    """InvalidArgument unless `factory` is a callable (a model factory is called with no arguments)."""
    if not callable(factory) or isinstance(factory, torch.nn.Module):
        raise InvalidArgument(
            f"model={factory!r} must be a factory: a callable with no arguments that builds a new nn.Module "
            "(called under torch.manual_seed(seed), so its initialisation is deterministic); "
            "for a module you already built, pass `lambda: copy.deepcopy(module)`"
        )


def build(factory: Callable, seed: int, dtype: torch.dtype) -> torch.nn.Module:
    """factory() with torch's generator seeded by `seed` (restored afterwards), in `dtype`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = factory()
    if not isinstance(model, torch.nn.Module):
        raise InvalidArgument(f"model factory {describe(factory)} returned {type(model).__name__}, not an nn.Module")
    model = model.to(dtype)
    if not any(p.requires_grad for p in model.parameters()):
        raise InvalidArgument(f"model factory {describe(factory)} built a model with no trainable parameter")
    return model


DETERMINISTIC: set = set()
"""Factories already built twice under one seed with equal results: later seeds build them once."""


@lru_cache(maxsize=64)
def checked_build(factory: Callable, seed: int, dtype: torch.dtype) -> torch.nn.Module:
    """factory() under `seed` (never handed out, only copied); the factory's first build in this process is built twice:
    InvalidArgument when the two differ."""
    model = build(factory, seed, dtype)
    try:
        known = factory in DETERMINISTIC
    except TypeError:  # unhashable: checked every time
        known = False
    if known:
        return model
    again = build(factory, seed, dtype)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        if not torch.equal(a, b):
            raise InvalidArgument(
                f"model factory {describe(factory)} built different {name!r} twice under torch.manual_seed({seed}): "
                "initialise from torch's global generator (as nn.Module constructors do), not from another source"
            )
    try:
        DETERMINISTIC.add(factory)
    except TypeError:
        pass
    return model


def check_dataset(data) -> tuple:
    """InvalidArgument unless `data` is a pair (x, y), y a tensor and x a tensor or a mapping of keyword → tensor
    (input_ids, attention_mask, …), with the same number N ≥ 1 of rows."""
    if not (isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[1], torch.Tensor)):
        raise InvalidArgument(
            "a dataset must be a pair (x, y): y a tensor, x a tensor or a mapping of keyword → tensor, their first "
            f"dimension the rows; got {data!r:.200}"
        )
    x, y = data
    batches.check_inputs(x)
    if y.dim() == 0 or batches.rows(x) != len(y) or len(y) < 1:
        raise InvalidArgument(
            f"a dataset's x and y need the same number N ≥ 1 of rows: x {batches.shape(x)} with "
            f"{batches.rows(x)} rows, y {tuple(y.shape)}"
        )
    return x, y


def rounding_depth(model: torch.nn.Module, x, y: torch.Tensor, loss_fn: Callable) -> int:
    """D = Σ numel(θ) + a row's elements + 8·(autograd nodes of its loss): bounds the roundings along any path of its gradient.

    Each rounding on a path through the row's forward and backward is an elementary function's
    (≤ 8 per autograd node, as in properties.bounds) or one term of a reduction, over a parameter's
    entries (a dot product with a weight row) or over the row's own elements (its positions, tokens).
    """
    loss = loss_fn(call_model(model, x), y)
    nodes, seen, stack = 0, set(), [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        nodes += 1
        stack.extend(next_node for next_node, _ in node.next_functions)
    parameters = sum(p.numel() for p in model.parameters())
    return parameters + sum(t.numel() for t in batches.tensors(x)) + y.numel() + ELEMENTARY_ROUNDINGS * nodes


def splits(rows: int, max_micro_batches: int) -> st.SearchStrategy[tuple[int, ...]]:
    """Sizes of consecutive micro-batches covering all N rows: 1 ≤ count ≤ min(N, max_micro_batches), unequal, 1 included."""

    @st.composite
    def draw(draw_) -> tuple[int, ...]:
        count = draw_(st.integers(1, min(rows, max_micro_batches)))
        cuts = sorted(draw_(st.sets(st.integers(1, rows - 1), min_size=count - 1, max_size=count - 1))) if count > 1 else []
        edges = [0, *cuts, rows]
        return tuple(b - a for a, b in zip(edges, edges[1:]))

    return draw()


@dataclass(frozen=True, eq=False)
class UserCase:
    """The user's model factory and dataset: the model built under `seed`, the N rows cut into micro-batches of `sizes`;
    `output` reads the loss's input from what the model returns (None: the tensor, or a model output's .logits)."""

    factory: Callable
    data: tuple[torch.Tensor, torch.Tensor]
    sizes: tuple[int, ...]
    loss: RecipeLoss
    dtype: torch.dtype = torch.float64
    seed: int = 0
    device: str = field(default="cpu")
    output: Callable | None = None

    @property
    def model(self) -> str:
        """The factory's name (where a Case has its ModelSpec)."""
        return describe(self.factory)

    @property
    def rows(self) -> int:
        """N, the dataset's rows."""
        return sum(self.sizes)

    @cached_property
    def first_build(self) -> torch.nn.Module:
        """The model as first built (then only copied)."""
        try:
            return checked_build(self.factory, self.seed, self.dtype)
        except TypeError:  # an unhashable factory: built without the cache
            return checked_build.__wrapped__(self.factory, self.seed, self.dtype)

    def build_model(self) -> torch.nn.Module:
        """A fresh copy of the model built from the factory under this case's seed."""
        return copy.deepcopy(self.first_build)

    def full_batch(self) -> tuple:
        """The dataset, floating-point tensors in the case's dtype."""
        return tuple(batches.to_dtype(t, self.dtype) for t in self.data)

    def micro_batches(self) -> list[tuple]:
        """The dataset cut, in order, into micro-batches of the drawn sizes."""
        x, y = self.full_batch()
        return list(zip(batches.split(x, list(self.sizes)), torch.split(y, list(self.sizes))))

    @cached_property
    def depth(self) -> int:
        """D for this model and loss on the dataset's first row (`rounding_depth`)."""
        x, y = (batches.rows_slice(t, 0, 1) for t in self.full_batch())
        return rounding_depth(self.build_model(), x, y, OutputLoss(self.loss.fn, self.output))

    def counts(self) -> list[int]:
        """Items the loss counts in each micro-batch (tokens ≠ ignore_index, elements, rows)."""
        return [self.loss.counted(y) for _, y in self.micro_batches()]

    def __repr__(self) -> str:
        sizes = list(self.sizes)
        counts = self.counts()
        counted = "" if counts == sizes else f" holding {counts} counted items"
        return (
            f"{self.model}, {self.loss!r}, {dtype_name(self.dtype)}, dataset of {self.rows} row{'s' if self.rows != 1 else ''} "
            f"{batches.shape(self.data[0])}, micro-batches {sizes}{counted}, seed {self.seed}"
        )

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(repr(self))


def check_forward(case: UserCase) -> None:
    """InvalidArgument, saying what to change, unless the model takes the dataset's x (a tensor positionally, a mapping
    as keywords) and the loss reads what it returns and gives a scalar."""
    model = case.build_model()
    x, y = (batches.rows_slice(t, 0, 1) for t in case.full_batch())
    how = f"model(**x) with x's keys {list(x)}" if isinstance(x, dict) else "model(x)"
    try:
        with torch.random.fork_rng(devices=[]):  # a random forward draws from torch's generator: give it back as it was
            output = call_model(model, x)
            again = call_model(model, x)
    except Exception as error:
        raise InvalidArgument(
            f"model factory {case.model} built a model that fails on the dataset's first row as {how}: "
            f"{type(error).__name__}: {error}. The checker calls the model on x (a tensor positionally, a mapping of "
            "keyword → tensor as keywords); make data= match what the model takes"
        ) from None
    value, again = loss_input(output, case.output), loss_input(again, case.output)
    if value.shape != again.shape or not torch.equal(value, again):
        raise InvalidArgument(
            f"model factory {case.model} built a model whose forward gives different outputs on the same input: "
            "dropout in training mode, or other randomness. The checker compares two runs of the same computation: "
            "build it with dropout 0 (e.g. resid_pdrop=embd_pdrop=attn_pdrop=0.0, or hidden_dropout_prob=0.0)"
        )
    try:
        loss = case.loss.fn(value, y)
    except Exception as error:
        raise InvalidArgument(
            f"loss {case.loss!r} fails on the model's output {tuple(value.shape)} {value.dtype} and y {tuple(y.shape)} "
            f"{y.dtype}: {type(error).__name__}: {error}. Pass loss= one that takes (model output, y), or output= a "
            "function from what the model returns to what the loss takes"
        ) from None
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise InvalidArgument(f"loss {case.loss!r} returned {type(loss).__name__}, not a scalar tensor (a mean-reduced loss)")
