"""The reference: one optimizer step per window on the window's concatenated samples, mean loss (full-batch steps)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property, partial

import torch

from properties import bounds
from properties import grads as G
from properties.accumulate import windows_of
from properties.case import Case, dtype_name
from properties.recipes import batches
from properties.recipes.examples import RecipeCase
from properties.recipes.losses import MSE
from properties.recipes.outputs import call_model
from properties.recipes.trace import Run, observe
from properties.recipes.user_case import rounding_depth


def full_batch_steps(
    model,
    optimizer,
    micro_batches,
    loss_fn,
    accumulation_steps,
    *,
    last_window="step",
    max_norm=None,
    scheduler=None,
    scaler=None,
) -> None:
    """For each window of k micro-batches: L = mean loss over all its samples, one backward, (clip), one step, (schedule)."""
    for window in windows_of(micro_batches, accumulation_steps, keep_short=last_window != "drop"):
        x = batches.cat([x for x, _ in window])
        y = torch.cat([y for _, y in window])
        loss = loss_fn(call_model(model, x), y)
        parameters = [p for _, p in G.trainable(model)]
        if scaler is None:
            loss.backward()
            finite = True
        else:
            scaler.scale(loss).backward()
            finite = all(bool(torch.isfinite(p.grad).all()) for p in parameters if p.grad is not None)
            scaler.unscale_(optimizer)
        if max_norm is not None:
            torch.nn.utils.clip_grad_norm_(parameters, max_norm)
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)
            scaler.update()
        if scheduler is not None and finite:
            scheduler.step()
        optimizer.zero_grad()


def reference_run(example: RecipeCase) -> Run:
    """The full-batch reference observed the same way as the recipe under test."""
    return observe(partial(full_batch_steps, last_window=example.last_window), example)


@dataclass(frozen=True)
class Expected:
    """What step i should use: rows [start, stop), their mean-loss gradient (clipped), each micro-batch's own gradient
    with its rows, and the items the loss counts in each (rows·d for MSE, tokens ≠ ignore_index for token CE)."""

    start: int
    stop: int
    gradient: G.GradMap
    parts: tuple[tuple[int, G.GradMap], ...]
    bound: bounds.Bound
    counts: tuple[int, ...] = ()

    def weighted_parts(self) -> list[G.GradMap]:
        """(cⱼ/c)·gⱼ for each micro-batch part (cⱼ the items it counts): the terms whose sum is the window's mean-loss gradient."""
        counts = self.counts or tuple(rows for rows, _ in self.parts)
        return [scaled(part, c / sum(counts)) for c, (_, part) in zip(counts, self.parts)]

    def row_weighted_parts(self) -> list[G.GradMap]:
        """(mⱼ/n)·gⱼ, weighting each part by its rows: right only when rows and counted items are proportional."""
        n = self.stop - self.start
        return [scaled(part, rows / n) for rows, part in self.parts]


class Probe:
    """A model of the example's architecture and the epoch's samples, for gradients at any recorded parameters;
    `precision` is the lowest precision the recipe's run computed in (the bounds' unit roundoff)."""

    def __init__(self, example: RecipeCase, precision: torch.dtype | None = None):
        self.example = example
        self.precision = precision or example.case.dtype
        self.model = example.build_model()
        xs, ys = zip(*example.micro_batches())
        self.x, self.y = batches.cat(list(xs)), torch.cat(ys)

    @cached_property
    def depth(self) -> int:
        """D, a bound on the roundings along any path of one row's loss gradient (`rounding_depth`)."""
        return rounding_depth(self.model, batches.rows_slice(self.x, 0, 1), self.y[:1], self.example.handed_loss)

    def gradient(self, params: dict, start: int, stop: int) -> G.GradMap:
        """∇θ of the mean loss over rows [start, stop) of the run at parameters `params`."""
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                p.copy_(params[name])
        model, x, y = self.model, batches.rows_slice(self.x, start, stop), self.y[start:stop]
        return G.fresh_gradients(model, self.example.handed_loss(call_model(model, x), y))

    def bound(self, params: dict, start: int, stop: int) -> bounds.Bound:
        """The rounding bound of the gradient over rows [start, stop): replayed for a ModelSpec with MSE, else from
        the per-row terms (cₛ/c)·∇ℓ̄ₛ actually summed (`bounds.sample_terms_bound`), at the run's lowest precision."""
        example = self.example
        x, y = batches.rows_slice(self.x, start, stop), self.y[start:stop]
        if isinstance(example.case, Case) and example.loss is MSE:
            return bounds.mse_gradient_bound(example.case.model, self.model, x, y, count=y.numel(), dtype=self.precision)
        total = example.loss.counted(y)
        terms = []
        for row in range(start, stop):
            counted = example.loss.counted(self.y[row : row + 1])
            if counted:
                terms.append(scaled(self.gradient(params, row, row + 1), counted / total))
        bound = bounds.sample_terms_bound(terms, self.depth, self.precision)
        if self.precision != example.case.dtype:
            note = f": the run computed in {dtype_name(self.precision)} (its loss, say), although the model is {dtype_name(example.case.dtype)}"
            bound = dataclasses.replace(bound, precision_note=note)
        return bound

    def expected(self, params: dict, start: int, stop: int) -> Expected:
        """The full-batch gradient over rows [start, stop) (clipped to max_norm if set) and the micro-batch parts of it."""
        edges = self.example.boundaries
        pieces = [(max(a, start), min(b, stop)) for a, b in zip(edges, edges[1:]) if min(b, stop) > max(a, start)]
        parts = tuple((b - a, self.gradient(params, a, b)) for a, b in pieces)
        counts = tuple(self.example.loss.counted(self.y[a:b]) for a, b in pieces)
        bound = self.bound(params, start, stop)
        gradient = self.gradient(params, start, stop)
        bound = bounds.clipped_bound(bound, gradient, self.example.clip_norm)
        return Expected(start, stop, clipped(gradient, self.example.clip_norm), parts, bound, counts)


def scaled(gradient: G.GradMap, factor: float) -> G.GradMap:
    """factor·g for every gradient (None stays None)."""
    return {name: None if g is None else g * factor for name, g in gradient.items()}


def clipped(gradient: G.GradMap, max_norm: float | None) -> G.GradMap:
    """The gradient scaled as clip_grad_norm_ scales it: by min(1, max_norm / (‖g‖₂ + 1e-6)) over all parameters."""
    if max_norm is None:
        return gradient
    present = {name: g for name, g in gradient.items() if g is not None}
    if not present:
        return gradient
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in present.values()]))
    return scaled(gradient, torch.clamp(max_norm / (total + 1e-6), max=1.0))
