"""Likely causes: what a failing run's evidence (step placement, leaks, step gradients, lr, scale) says went wrong."""

from __future__ import annotations

import torch

from properties import grads as G
from properties.compare import assert_grads_close, unit_roundoff
from properties.recipes import losses
from properties.recipes.checks import gradient_tolerance, placements, plural, scheduled_lrs, widest
from properties.recipes.full_batch import clipped, scaled
from properties.recipes.observation import Observation

FIX_WEIGHTS = "weight micro-batch j's mean loss by mⱼ / n_window (its share of the window's samples)"
FIX_COUNTED = (
    "weight micro-batch j's mean loss by cⱼ / c_window (its share of the items the loss counts in the window, e.g. "
    "tokens ≠ ignore_index), or sum the loss and divide by c_window (num_items_in_batch)"
)


def by_counted_items(example) -> bool:
    """Whether the loss averages over items it counts (tokens ≠ ignore_index), not rows or all elements: causes then
    speak of counted items cⱼ, never of rows."""
    return example.loss.count not in (losses.rows, losses.elements)


def step_causes(observation: Observation) -> list[str]:
    """Where the steps came, read as a known mistake: every micro-batch, last window missing, off by one, inf window stepped."""
    example = observation.example
    got, want = observation.run.step_rows, observation.reference.step_rows
    if got == want:
        return []
    bounds, k, windows = example.boundaries, example.k, example.all_windows
    short = len(windows[-1]) < k
    not_stepped = "the short last window was not stepped" if short else "the last window was not stepped"
    step_it_too = "; step after the last micro-batch too: `if (i + 1) % k == 0 or i + 1 == len(micro_batches)`"
    if not got:
        if want and len(windows) == 1 and short:
            only = f"(the only window, {len(windows[0])} < k={k} micro-batches)"
            return [f"the recipe never called optimizer.step(): {not_stepped} {only}{step_it_too}"]
        return ["the recipe never called optimizer.step()"]
    if got == bounds[1:] and len(bounds) > 2:
        return [f"stepped every micro-batch instead of once per window of k={k} micro-batches"]
    if example.last_window == "step" and got == want[:-1]:
        return [not_stepped + step_it_too]
    if example.last_window == "drop" and got == want + [bounds[-1]]:
        return ["the short last window was stepped although last_window='drop' asks to drop it"]
    if got == [bounds[w.start + 1] for w in windows][: len(got)] and k > 1:
        return [
            "the step condition is off by one: stepped after the first micro-batch of each window "
            "(`i % k == 0` with i counted from 0) instead of its last (`(i + 1) % k == 0`)"
        ]
    skipped = {bounds[w.stop] for w in windows if not example.is_finite_window(w)}
    extra = set(got) - set(want)
    if extra and extra <= skipped:
        return [
            "stepped a window whose gradient had an inf/NaN: under GradScaler the whole window's step must be skipped — "
            "scale every micro-batch's loss (scaler.scale(loss).backward()), step once per window with scaler.step(optimizer)"
        ]
    return [f"the steps came {placements(example, got)}; each window's step belongs {placements(example, want)}"]


def leak_causes(observation: Observation) -> list[str]:
    """A backward that added onto the previous window's gradient."""
    leaks = observation.run.leaks
    if not leaks:
        return []
    first = leaks[0]
    if first.epoch:
        return [
            f"gradients leak across windows, from one epoch into the next: what epoch {first.epoch - 1} left in .grad "
            f"reached epoch {first.epoch}'s first "
            f"step — {epoch_end(observation)}; zero the gradients when an epoch ends (or call optimizer.zero_grad() "
            "before the first backward)"
        ]
    return [
        f"gradients leak across windows: .grad is not reset after optimizer step {first.after_step} "
        "— call optimizer.zero_grad() after every step"
    ]


def epoch_end(observation: Observation) -> str:
    """What the last rows of an epoch did: stepped without a reset, or backpropagated and never stepped (a dropped window)."""
    example, steps = observation.example, observation.run.step_rows
    first_epoch_end = example.boundaries[example.epoch_length]
    last_step = max((rows for rows in steps if rows <= first_epoch_end), default=0)
    if last_step == first_epoch_end:
        return "the epoch's last optimizer step was not followed by optimizer.zero_grad()"
    rows = first_epoch_end - last_step
    return (
        f"the epoch's last {plural(rows, 'row')} {'was' if rows == 1 else 'were'} backpropagated but never stepped "
        "(a dropped short window) and that gradient stayed in .grad"
    )


def scheduler_causes(observation: Observation) -> list[str]:
    """scheduler.step() per micro-batch, never, or for skipped steps."""
    run, example = observation.run, observation.example
    if not example.scheduler or run.scheduler_steps is None:
        return []
    ran, taken = run.scheduler_steps, len(run.steps)
    lrs_right = all(s.lrs == lr for s, lr in zip(run.steps, scheduled_lrs(example, taken)))
    if ran == taken and lrs_right:
        return []
    if ran == 0:
        return ["scheduler.step() is never called: call it once after every optimizer step"]
    if ran == taken and all(s.lrs == lr for s, lr in zip(run.steps, scheduled_lrs(example, taken + 1)[1:])):
        return ["scheduler.step() runs before optimizer.step(): each step uses the next step's learning rate"]
    if ran == len(example.sizes) and ran != taken:
        return ["scheduler.step() runs every micro-batch instead of once per optimizer step"]
    if ran == len(example.windows) and ran > taken:
        return ["scheduler.step() runs for every window, also when GradScaler skipped the optimizer step"]
    return [f"scheduler.step() ran {plural(ran, 'time')} for {plural(taken, 'optimizer step')}"]


def scale_causes(observation: Observation) -> list[str]:
    """scaler.update() never or per micro-batch, or an inf/NaN that never reached the scaler."""
    example = observation.example
    if not example.scaler:
        return []
    got, want = observation.run.scales, observation.reference.scales
    if got == want:
        return []
    if not got:
        return [
            "scaler.update() is never called: the scale never backs off after an inf/NaN "
            "(call it once per window, after scaler.step)"
        ]
    if len(got) == len(example.sizes) != len(want):
        return ["scaler.update() runs every micro-batch instead of once per window"]
    for window, (g, w) in enumerate(zip(got, want), start=1):
        if g > w:
            return [
                f"window {window} had an inf/NaN but the scale did not back off: the non-finite micro-step never reached "
                "the scaler's check (its micro-batch skipped, its gradient sanitised, or its loss not scaled)"
            ]
    return [f"scaler.update() ran {plural(len(got), 'time')} for {plural(len(want), 'window')}"]


def vector(gradient: G.GradMap, names: list[str], like: G.GradMap) -> torch.Tensor:
    """All named gradients as one float64 vector (None as zeros shaped like `like`)."""
    pieces = [
        (gradient.get(name) if gradient.get(name) is not None else torch.zeros_like(like[name])).double().flatten()
        for name in names
    ]
    return torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.float64)


def fit(actual: torch.Tensor, direction: torch.Tensor, rtol: float) -> float | None:
    """c when actual ≈ c·direction (relative residual ≤ rtol), else None."""
    norm = float(direction @ direction)
    if norm == 0.0 or not bool(torch.isfinite(actual).all()) or not bool(torch.isfinite(direction).all()):
        return None
    c = float(actual @ direction) / norm
    residual = float((actual - c * direction).norm())
    return c if residual <= rtol * max(float(actual.norm()), abs(c) * norm**0.5, 1e-300) else None


def near(value: float | None, target: float, rtol: float) -> bool:
    """value is within rtol of target."""
    return value is not None and abs(value - target) <= rtol * max(abs(target), 1e-300)


def clean(c: float, rtol: float) -> bool:
    """c or 1/c is within rtol of a whole number up to 64: a factor a loop's arithmetic could have made."""
    return any(near(value, round(value), rtol) and 1 <= round(value) <= 64 for value in (abs(c), 1 / abs(c)) if c)


def first_wrong_step(observation: Observation) -> int | None:
    """Index of the first step whose gradient is not its window's mean-loss gradient, or None."""
    for i, step in enumerate(observation.run.steps):
        expected = observation.expected(i)
        if expected.stop == expected.start:
            return None
        try:
            assert_grads_close(step.grads, expected.gradient, tolerance=gradient_tolerance(observation.example, expected))
        except AssertionError:
            return i
    return None


def known_mistakes(example, i: int, expected) -> list[tuple[G.GradMap, str]]:
    """(gradient, cause) for the mistakes a loop makes on step i's window: unclipped, clipped per micro-step, ÷k, unweighted."""
    sizes = [rows for rows, _ in expected.parts]
    weighted = expected.weighted_parts()
    mistakes = []
    if example.clip_norm is not None:
        partial: G.GradMap = {}
        for part in weighted:
            partial = clipped(G.combine([partial, part]), example.clip_norm)
        norm = float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in G.combine(weighted).values() if g is not None])))
        unclipped = f"step {i + 1}'s gradient was not clipped (its norm {norm:.4g} > max_norm={example.clip_norm})"
        per_step = (
            "clip_grad_norm_ was applied at every micro-step, to a partial sum: clip once, after the window's last backward"
        )
        mistakes += [(G.combine(weighted), unclipped), (partial, per_step)]
    counts = list(expected.counts)
    if counts and len(sizes) > 1 and any(c * sum(sizes) != m * sum(counts) for c, m in zip(counts, sizes)):
        mistakes.append(
            (
                clipped(G.combine(expected.row_weighted_parts()), example.clip_norm),
                f"each micro-batch's mean loss was weighted by its rows mⱼ/n {sizes}, not by the items the loss counts "
                f"{counts} ({example.loss!r}): the mean over rows of per-micro-batch means is not the mean over the "
                f"window's counted items when micro-batches count different numbers of them (padding, ignore_index); {FIX_COUNTED}",
            )
        )
    summed = G.combine([part for _, part in expected.parts])
    k, short = example.k, len(sizes) < example.k
    tokens = by_counted_items(example)
    shares, item, total, fix = (
        (counts, "counted item", "c_window", FIX_COUNTED) if tokens else (sizes, "sample", "n_window", FIX_WEIGHTS)
    )
    unequal = "micro-batches counting unequal items" if tokens else "micro-batches of unequal size"
    if k > 1:  # ÷1 is no mistake
        mistakes.append(
            (
                clipped(scaled(summed, 1 / k), example.clip_norm),
                f"each micro-batch's mean loss was divided by k={k}: a {item} then weighs 1/(k·{'cⱼ' if tokens else 'mⱼ'}) instead "
                f"of 1/{total}, wrong for {'a window of fewer than k micro-batches' if short else unequal} "
                f"(this window: {'counted items ' if tokens else ''}{shares}); {fix}",
            )
        )
    if len(sizes) > 1:
        summed_cause = (
            f"the gradient is {len(sizes)}× the reference (k×): the {len(sizes)} micro-batch mean losses were summed with no 1/k"
            if len(set(shares)) == 1
            else f"the micro-batch mean losses ({'counted items ' if tokens else ''}{shares}) were summed with no weighting "
            "(k× the reference for equal sizes)"
        )
        mistakes.append((clipped(summed, example.clip_norm), f"{summed_cause}; {fix}"))
    return mistakes


def gradient_causes(observation: Observation) -> list[str]:
    """The first wrong step's gradient matched against known mistakes, the last micro-batch alone, a leak, the loss scale."""
    i = first_wrong_step(observation)
    if i is None:
        return []
    example, step, expected = observation.example, observation.run.steps[i], observation.expected(i)
    names = [name for name, g in expected.gradient.items() if g is not None]
    n = expected.stop - expected.start
    rtol = min(1e-2, 64 * n * widest(example) * unit_roundoff(observation.run.precision or example.case.dtype))
    as_vector = lambda gradient: vector(gradient, names, expected.gradient)  # noqa: E731
    actual = as_vector(step.grads)
    mistakes = known_mistakes(example, i, expected)
    for gradient, cause in mistakes:
        if near(fit(actual, as_vector(gradient), rtol), 1.0, rtol):
            return [cause]
    telling = actual.numel() > 1
    sizes = [rows for rows, _ in expected.parts]
    if len(sizes) > 1:
        c = fit(actual, as_vector(expected.parts[-1][1]), rtol)
        if c is not None and (telling or near(c, sizes[-1] / n, rtol) or clean(c, rtol)):
            return [
                f"only the last micro-batch's gradient reached step {i + 1} ({c:.4g}× its mean-loss gradient): "
                "zero_grad() runs inside the micro-batch loop — call it once per window, after the step"
            ]
    if i > 0 and not observation.run.leaks:
        rest = actual - as_vector(observation.run.steps[i - 1].grads)
        if any(near(fit(rest, as_vector(g), rtol), 1.0, rtol) for g in [expected.gradient] + [g for g, _ in mistakes]):
            return [
                f"gradients leak across windows: step {i + 1}'s gradient still holds step {i}'s "
                "— call optimizer.zero_grad() after every step"
            ]
    c = fit(actual, as_vector(expected.gradient), rtol)
    if c is None or not (telling or clean(c, rtol)):
        return []
    if example.scaler and c >= 16 and float(c).is_integer() and (int(c) & (int(c) - 1)) == 0:
        return [
            f"step {i + 1}'s gradient is still multiplied by the loss scale ({c:g}): "
            "step with scaler.step(optimizer), which unscales first"
        ]
    return [f"step {i + 1}'s gradient is {c:.4g}× the mean-loss gradient of its window"]


def likely_causes(observation: Observation) -> list[str]:
    """Every cause the evidence points to: steps, leaks, lr, scale; step gradients only when steps and resets are right."""
    if observation.run.error is not None:
        return []
    causes = step_causes(observation) + leak_causes(observation)
    structural = bool(causes)
    causes += scheduler_causes(observation) + scale_causes(observation)
    return causes if structural else causes + gradient_causes(observation)
