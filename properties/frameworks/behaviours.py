"""What a framework does instead of one full-batch step per window: models that predict every step, to confirm a deviation.

A failure counts as a registered deviation only when the deviation's behaviour reproduces the
run: the optimizer steps come exactly where the behaviour puts them, and each step's .grad is the
behaviour's weighted sum of its batches' mean-loss gradients at the parameters the framework had
then (within the relative tolerance the recipe checker's likely causes use). Anything else — a
different factor, a step in the wrong place, a leak, an exception — is not the deviation, and
fails as any counterexample does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from properties import grads as G
from properties.compare import unit_roundoff
from properties.frameworks.cases import FrameworkCase
from properties.recipes.causes import fit, near, vector
from properties.recipes.checks import widest
from properties.recipes.full_batch import scaled
from properties.recipes.observation import Observation


@dataclass(frozen=True)
class Behaviour:
    """Which windows are stepped (micro-batch indices over the whole run) and the factor on batch j's mean-loss gradient
    in its window: weight(example, window, j)."""

    name: str
    description: str
    windows: Callable[[FrameworkCase], list[range]]
    weight: Callable[[FrameworkCase, range, int], float]


def per_epoch(example: FrameworkCase) -> list[range]:
    """Windows of k batches restarting at every epoch; each epoch's short last window stepped."""
    return example.all_windows


def across_epochs(example: FrameworkCase) -> list[range]:
    """Windows of k batches counted over the whole run; a window the run ends inside is never stepped."""
    count = len(example.case.sizes)
    return [range(start, start + example.k) for start in range(0, count - example.k + 1, example.k)]


def trainer_before_4_46(example: FrameworkCase) -> list[range]:
    """The transformers Trainer's windows before 4.46: a step when the batches counted over the whole run reach a multiple
    of k, or at the last batch of an epoch of at most k batches; the run stops after epochs × max(batches ÷ k, 1) steps.

    (trainer.py, _inner_training_loop: total_batched_samples % gradient_accumulation_steps == 0 or
    is_last_step_and_steps_less_than_grad_acc; max_steps = num_train_epochs × num_update_steps_per_epoch.)
    """
    n, k = len(example.epoch_sizes), example.k
    max_steps = example.epochs * max(n // k, 1)
    windows, start, total = [], 0, 0
    for epoch in range(example.epochs):
        for step in range(n):
            total += 1
            if total % k == 0 or (n <= k and step == n - 1):
                end = epoch * n + step + 1
                windows.append(range(start, end))
                start = end
                if len(windows) >= max_steps:
                    return windows
    return windows


def unshifted_labels(y: torch.Tensor) -> int:
    """Labels ≠ -100 at every position, position 0 included (what a count that forgets the causal shift counts)."""
    return int((y != -100).sum())


def over_unshifted_count(example: FrameworkCase, window: range, j: int) -> float:
    """cⱼ / u_window: batch j's Σ CE over its shifted counted labels divided by the window's unshifted label count."""
    batches = example.micro_batches()
    unshifted = sum(unshifted_labels(batches[i][1]) for i in window)
    return example.loss.counted(batches[j][1]) / unshifted


BEHAVIOURS = {
    behaviour.name: behaviour
    for behaviour in (
        Behaviour("means ÷ k", "each batch's mean-loss gradient × 1/k", per_epoch, lambda example, window, j: 1 / example.k),
        Behaviour(
            "means ÷ window batches",
            "each batch's mean-loss gradient × 1/(batches in its window)",
            per_epoch,
            lambda example, window, j: 1 / len(window),
        ),
        Behaviour(
            "windows across epochs, means ÷ k",
            "windows of k batches across epoch ends, each batch's mean-loss gradient × 1/k",
            across_epochs,
            lambda example, window, j: 1 / example.k,
        ),
        Behaviour(
            "Trainer < 4.46: windows across epochs, means ÷ k",
            "windows of k batches counted across epoch ends (an epoch of at most k batches ends one), at most "
            "epochs × max(batches ÷ k, 1) steps, each batch's mean-loss gradient × 1/k",
            trainer_before_4_46,
            lambda example, window, j: 1 / example.k,
        ),
        Behaviour(
            "Σ CE ÷ unshifted count",
            "each batch's Σ CE over its shifted labels ÷ the window's count of labels ≠ -100 unshifted (one more per row)",
            per_epoch,
            over_unshifted_count,
        ),
    )
}


def same_direction_and_size(actual: G.GradMap, predicted: G.GradMap, example: FrameworkCase, rows: int, precision=None) -> bool:
    """actual ≈ predicted: 1× it, with a relative residual within the likely-cause tolerance (both zero counts too)."""
    names = [name for name, g in predicted.items() if g is not None]
    a, p = vector(actual, names, predicted), vector(predicted, names, predicted)
    missing = [name for name in names if actual.get(name) is None]
    if missing:
        return False
    if float(p.norm()) == 0.0:
        return float(a.norm()) == 0.0
    rtol = min(1e-2, 64 * rows * widest(example) * unit_roundoff(precision or example.case.dtype))
    return near(fit(a, p, rtol), 1.0, rtol)


def unexplained(observation: Observation, behaviour: Behaviour) -> str | None:
    """None when `behaviour` reproduces the observed run step for step; otherwise what it does not reproduce."""
    run, example = observation.run, observation.example
    if run.error is not None:
        return f"the run raised {type(run.error).__name__}"
    if run.data_change is not None or run.leaks:
        return "the run changed its data or leaked gradients across windows"
    if any(not bool(torch.isfinite(value).all()) for value in run.final.values()):
        return "the run left non-finite parameters"
    windows = behaviour.windows(example)
    bounds = example.boundaries
    predicted_rows = [bounds[window.stop] for window in windows]
    if run.step_rows != predicted_rows:
        return f"the steps came after rows {run.step_rows}; {behaviour.name!r} steps after rows {predicted_rows}"
    probe = observation.probe
    for i, (step, window) in enumerate(zip(run.steps, windows), start=1):
        parts = [
            scaled(probe.gradient(step.params, bounds[j], bounds[j + 1]), behaviour.weight(example, window, j)) for j in window
        ]
        rows = bounds[window.stop] - bounds[window.start]
        if not same_direction_and_size(step.grads, G.combine(parts), example, rows, run.precision):
            return f"step {i}'s gradient is not {behaviour.description}"
    return None
