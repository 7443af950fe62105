"""Recipes that misbehave rather than mis-accumulate: each must get a clear error from check_recipe, never a pass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from properties.recipes.bundled import accumulate


def raises_on_a_one_row_micro_batch(model, optimizer, micro_batches, loss_fn, accumulation_steps):
    """Raises ValueError when a micro-batch has a single row."""
    if any(len(x) == 1 for x, _ in micro_batches):
        raise ValueError("cannot normalise a micro-batch of one row")
    accumulate(model, optimizer, micro_batches, loss_fn, accumulation_steps)


def returns_at_once(model, optimizer, micro_batches, loss_fn, accumulation_steps):
    """Does nothing: never steps."""


def divides_by_zero(model, optimizer, micro_batches, loss_fn, accumulation_steps):
    """Divides each loss by an empty window's size (0), so the parameters become inf/NaN."""
    for x, y in micro_batches:
        (loss_fn(model(x), y) / torch.zeros((), dtype=y.dtype)).backward()
        optimizer.step()
        optimizer.zero_grad()


def consumes_its_micro_batches(model, optimizer, micro_batches, loss_fn, accumulation_steps):
    """Pops every micro-batch off the list it was given (the caller's list ends up empty)."""
    window = []
    while micro_batches:
        window.append(micro_batches.pop(0))
        if len(window) == accumulation_steps or not micro_batches:
            accumulate(model, optimizer, window, loss_fn, accumulation_steps)
            window = []


def clamps_targets_in_place(model, optimizer, micro_batches, loss_fn, accumulation_steps):
    """Clamps every target to [-1, 1] in place before accumulating (the caller's data changes)."""
    for _, y in micro_batches:
        y.clamp_(-1.0, 1.0)
    accumulate(model, optimizer, micro_batches, loss_fn, accumulation_steps)


def decays_weights_by_hand(model, optimizer, micro_batches, loss_fn, accumulation_steps):
    """Accumulates correctly, then shrinks every parameter by 1% outside the optimizer (weight decay by hand)."""
    accumulate(model, optimizer, micro_batches, loss_fn, accumulation_steps)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(0.99)


def takes_four_arguments(model, optimizer, micro_batches, loss_fn):
    """Has no accumulation_steps parameter."""


@dataclass(frozen=True)
class Misbehaving:
    """A misbehaving recipe, the property its error must name, and words its message must contain."""

    name: str
    recipe: Callable
    property: str
    words: str

    def __repr__(self) -> str:
        return self.name


MISBEHAVING = (
    Misbehaving("raises", raises_on_a_one_row_micro_batch, "runs", "ValueError: cannot normalise a micro-batch of one row"),
    Misbehaving("never steps", returns_at_once, "steps", "never called optimizer.step()"),
    Misbehaving("NaN parameters", divides_by_zero, "finite", "non-finite parameters"),
    Misbehaving("empties its micro-batches", consumes_its_micro_batches, "data", "the micro_batches list was changed"),
    Misbehaving("modifies its micro-batches", clamps_targets_in_place, "data", "was modified in place"),
    Misbehaving("changes parameters outside the optimizer", decays_weights_by_hand, "parameters", "outside optimizer.step()"),
)
