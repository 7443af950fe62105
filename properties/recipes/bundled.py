"""Bundled recipes: the correct accumulation loop and the common wrong ones, each with the cause the checker should name."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from properties.accumulate import windows_of
from properties.tutorial import tutorial_second_loop


def rows_in(window) -> int:
    """n_window = Σⱼ mⱼ, the number of samples in a window."""
    return sum(len(x) for x, _ in window)


def counted(loss_fn, y: torch.Tensor) -> int:
    """cⱼ, the items a mean-reduced loss averages over in y: the handed loss's count(y) (tokens ≠ ignore_index, shifted
    for a causal LM); targets ≠ ignore_index for another loss that has one; else rows."""
    if callable(getattr(loss_fn, "count", None)):
        return loss_fn.count(y)
    ignore_index = getattr(loss_fn, "ignore_index", None)
    return len(y) if ignore_index is None else int((y != ignore_index).sum())


def accumulate(model, optimizer, micro_batches, loss_fn, accumulation_steps, *, max_norm=None, scheduler=None, scaler=None):
    """Correct: per window Σⱼ (cⱼ/c_window)·∇Lⱼ (cⱼ rows, or counted tokens under ignore_index), then (unscale, clip,)
    one step, (schedule,) zero_grad; short window stepped."""
    optimizer.zero_grad()
    for window in windows_of(micro_batches, accumulation_steps):
        items = sum(counted(loss_fn, y) for _, y in window)
        for x, y in window:
            loss = loss_fn(model(x), y) * (counted(loss_fn, y) / items)
            (loss if scaler is None else scaler.scale(loss)).backward()
        stepped = True
        if scaler is not None and max_norm is not None:
            scaler.unscale_(optimizer)
        if max_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        if scaler is None:
            optimizer.step()
        else:
            scale = scaler.get_scale()
            scaler.step(optimizer)
            scaler.update()
            stepped = scaler.get_scale() >= scale
        if scheduler is not None and stepped:
            scheduler.step()
        optimizer.zero_grad()


def divides_by_k(model, optimizer, micro_batches, loss_fn, accumulation_steps):
    """Wrong: each micro-batch's mean loss ÷ k — right only for k micro-batches of equal size."""
    optimizer.zero_grad()
    for window in windows_of(micro_batches, accumulation_steps):
        for x, y in window:
            (loss_fn(model(x), y) / accumulation_steps).backward()
        optimizer.step()
        optimizer.zero_grad()


def zero_grad_every_micro_batch(model, optimizer, micro_batches, loss_fn, accumulation_steps):
    """Wrong: zero_grad() inside the micro-batch loop, so only the last micro-batch's gradient reaches the step."""
    for window in windows_of(micro_batches, accumulation_steps):
        rows = rows_in(window)
        for x, y in window:
            optimizer.zero_grad()
            (loss_fn(model(x), y) * (len(x) / rows)).backward()
        optimizer.step()


def steps_every_micro_batch(model, optimizer, micro_batches, loss_fn, accumulation_steps):
    """Wrong: weights the losses for a window but calls optimizer.step() after every micro-batch."""
    for window in windows_of(micro_batches, accumulation_steps):
        rows = rows_in(window)
        for x, y in window:
            (loss_fn(model(x), y) * (len(x) / rows)).backward()
            optimizer.step()
            optimizer.zero_grad()


def off_by_one_step(model, optimizer, micro_batches, loss_fn, accumulation_steps):
    """Wrong: steps when i % k == 0 (i from 0), i.e. after the first micro-batch of each window instead of the last."""
    optimizer.zero_grad()
    for i, (x, y) in enumerate(micro_batches):
        start = i - i % accumulation_steps
        window = micro_batches[start : start + accumulation_steps]
        (loss_fn(model(x), y) * (len(x) / rows_in(window))).backward()
        if i % accumulation_steps == 0:
            optimizer.step()
            optimizer.zero_grad()


def drops_last_window(model, optimizer, micro_batches, loss_fn, accumulation_steps):
    """Wrong under last_window="step" (right under "drop"): steps only full windows, so a short last one is lost."""
    optimizer.zero_grad()
    for window in windows_of(micro_batches, accumulation_steps):
        rows = rows_in(window)
        for x, y in window:
            (loss_fn(model(x), y) * (len(x) / rows)).backward()
        if len(window) == accumulation_steps:
            optimizer.step()
        optimizer.zero_grad()


def never_zeroes(model, optimizer, micro_batches, loss_fn, accumulation_steps):
    """Wrong: never calls zero_grad(), so each window's gradient still holds every earlier window's."""
    for window in windows_of(micro_batches, accumulation_steps):
        rows = rows_in(window)
        for x, y in window:
            (loss_fn(model(x), y) * (len(x) / rows)).backward()
        optimizer.step()


def clips_every_micro_step(model, optimizer, micro_batches, loss_fn, accumulation_steps, *, max_norm):
    """Wrong: clip_grad_norm_ after every backward, clipping partial sums instead of the window's gradient once."""
    optimizer.zero_grad()
    for window in windows_of(micro_batches, accumulation_steps):
        rows = rows_in(window)
        for x, y in window:
            (loss_fn(model(x), y) * (len(x) / rows)).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        optimizer.step()
        optimizer.zero_grad()


def scheduler_every_micro_batch(model, optimizer, micro_batches, loss_fn, accumulation_steps, *, scheduler):
    """Wrong: scheduler.step() after every micro-batch, so the learning rate decays k× too fast."""
    optimizer.zero_grad()
    for i, (x, y) in enumerate(micro_batches):
        start = i - i % accumulation_steps
        window = micro_batches[start : start + accumulation_steps]
        (loss_fn(model(x), y) * (len(x) / rows_in(window))).backward()
        if (i + 1) % accumulation_steps == 0 or i + 1 == len(micro_batches):
            optimizer.step()
            optimizer.zero_grad()
        scheduler.step()


def scaler_zeroes_non_finite_gradients(model, optimizer, micro_batches, loss_fn, accumulation_steps, *, scaler):
    """Wrong: sets inf/NaN gradient entries to 0 before scaler.step, so a window with a non-finite micro-step is stepped."""
    optimizer.zero_grad()
    for window in windows_of(micro_batches, accumulation_steps):
        rows = rows_in(window)
        for x, y in window:
            scaler.scale(loss_fn(model(x), y) * (len(x) / rows)).backward()
        for parameter in model.parameters():
            if parameter.grad is not None:
                parameter.grad.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()


def scaler_never_updates(model, optimizer, micro_batches, loss_fn, accumulation_steps, *, scaler):
    """Wrong: scales and steps through the GradScaler but never calls scaler.update(), so the scale never backs off."""
    optimizer.zero_grad()
    for window in windows_of(micro_batches, accumulation_steps):
        rows = rows_in(window)
        for x, y in window:
            scaler.scale(loss_fn(model(x), y) * (len(x) / rows)).backward()
        scaler.step(optimizer)
        optimizer.zero_grad()


def leaves_the_last_window_in_grad(model, optimizer, micro_batches, loss_fn, accumulation_steps):
    """Wrong across epochs: steps a short last window after the loop without zero_grad(), so the next epoch's first step holds it."""
    k = accumulation_steps
    for i, (x, y) in enumerate(micro_batches):
        window = micro_batches[i - i % k : i - i % k + k]
        (loss_fn(model(x), y) * (len(x) / rows_in(window))).backward()
        if (i + 1) % k == 0:
            optimizer.step()
            optimizer.zero_grad()
    if len(micro_batches) % k:
        optimizer.step()


def drops_the_rest_but_keeps_its_gradient(model, optimizer, micro_batches, loss_fn, accumulation_steps):
    """Wrong across epochs under last_window="drop": backpropagates the short last window, never steps or zeroes it."""
    k = accumulation_steps
    for i, (x, y) in enumerate(micro_batches):
        window = micro_batches[i - i % k : i - i % k + k]
        (loss_fn(model(x), y) * (len(x) / rows_in(window))).backward()
        if (i + 1) % k == 0:
            optimizer.step()
            optimizer.zero_grad()


def weights_by_rows(model, optimizer, micro_batches, loss_fn, accumulation_steps):
    """Wrong for token losses with ignore_index: weights micro-batch j's mean by its rows mⱼ/n, not its counted tokens."""
    optimizer.zero_grad()
    for window in windows_of(micro_batches, accumulation_steps):
        rows = rows_in(window)
        for x, y in window:
            (loss_fn(model(x), y) * (len(x) / rows)).backward()
        optimizer.step()
        optimizer.zero_grad()


def token_options() -> dict:
    """check_recipe options for a token model: TokenModel, token cross-entropy with ignore_index, padded sequences."""
    from properties.recipes.losses import token_cross_entropy
    from properties.recipes.tokens import TokenModelFactory, token_sequences

    return {"model": TokenModelFactory(), "loss": token_cross_entropy(), "data": token_sequences()}


@dataclass(frozen=True)
class BuggyRecipe:
    """A wrong loop, the words its likely cause must contain, and the check_recipe options that expose it."""

    name: str
    recipe: Callable
    cause: str
    options: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return self.name


CORRECT_RECIPE = accumulate
CORRECT_WHEN_DROPPING = drops_last_window
"""The correct loop under last_window="drop": only full windows are stepped (and nothing else is backpropagated)."""
BUGGY_RECIPES = (
    BuggyRecipe("tutorial_second_loop", tutorial_second_loop, "last window was not stepped"),
    BuggyRecipe("divides_by_k", divides_by_k, "divided by k"),
    BuggyRecipe("zero_grad_every_micro_batch", zero_grad_every_micro_batch, "zero_grad() runs inside the micro-batch loop"),
    BuggyRecipe("steps_every_micro_batch", steps_every_micro_batch, "stepped every micro-batch"),
    BuggyRecipe("off_by_one_step", off_by_one_step, "off by one"),
    BuggyRecipe("drops_last_window", drops_last_window, "last window was not stepped"),
    BuggyRecipe("never_zeroes", never_zeroes, "gradients leak across windows"),
    BuggyRecipe("clips_every_micro_step", clips_every_micro_step, "at every micro-step", {"clip_norm": 0.1}),
    BuggyRecipe("scheduler_every_micro_batch", scheduler_every_micro_batch, "every micro-batch", {"scheduler": True}),
    BuggyRecipe("scaler_zeroes_non_finite_gradients", scaler_zeroes_non_finite_gradients, "inf/NaN", {"scaler": True}),
    BuggyRecipe("scaler_never_updates", scaler_never_updates, "scaler.update() is never called", {"scaler": True}),
    BuggyRecipe("leaves_the_last_window_in_grad", leaves_the_last_window_in_grad, "from one epoch into the next"),
    BuggyRecipe(
        "drops_the_rest_but_keeps_its_gradient",
        drops_the_rest_but_keeps_its_gradient,
        "backpropagated but never stepped",
        {"last_window": "drop"},
    ),
    BuggyRecipe("weights_by_rows", weights_by_rows, "not by the items the loss counts", token_options()),
)
