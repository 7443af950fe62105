"""The recipe properties, one check each: every check raises AssertionError saying what differed on one example."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import torch

from properties import bounds
from properties.case import Case
from properties.compare import EXACT, Tolerance, assert_grads_close, dense
from properties.recipes.examples import RecipeCase
from properties.recipes.hyperparameters import SCHEDULER_GAMMA, make_scheduler
from properties.recipes.observation import Observation


def widest(example: RecipeCase) -> int:
    """F = 1 + the longest dot product or bag a row goes through in the model (bounds the terms per row); D for a user's model."""
    if not isinstance(example.case, Case):
        return example.case.depth
    spec = example.case.model
    return 1 + max(spec.in_features, spec.out_features, spec.hidden, spec.bag if spec.takes_indices else 0)


def gradient_tolerance(example: RecipeCase, expected) -> dict[str, Tolerance]:
    """Per parameter, 2·γ_K·M for the window's mean-loss gradient (clipped), M and K replayed on magnitudes (`properties.bounds`).

    The window's micro-batch parts add k + 4 roundings (summing into .grad, the loss weights);
    a GradScaler's scale and unscale are powers of two, exact.
    """
    return expected.bound.tolerances(bounds.accumulation_roundings(max(len(expected.parts), 1)))


def placements(example: RecipeCase, rows: list[int]) -> str:
    """'after micro-batches 2, 3': after which micro-batch each step came (the row when a step fell inside one)."""
    if not rows:
        return "no step"
    where = [example.micro_batch_after(r) for r in rows]
    if all(w.startswith("micro-batch ") and " of epoch " not in w for w in where) and len(where) > 1:
        return "after micro-batches " + ", ".join(w.split()[-1] for w in where)
    return "after " + ", ".join(where)


def plural(count: int, word: str) -> str:
    """'1 step', '3 steps'."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def require_finished(observation: Observation) -> None:
    """Every property but 'runs' needs a finished run: fail, naming the recipe's exception, otherwise."""
    error = observation.run.error
    if error is not None:
        raise AssertionError(f"the recipe raised {type(error).__name__}: {error} (so this property cannot hold)")


def check_runs(observation: Observation) -> None:
    """The recipe returns without raising."""
    __tracebackhide__ = True
    run = observation.run
    if run.error is not None:
        raise AssertionError(
            f"the recipe raised {type(run.error).__name__}: {run.error}\n  its traceback (last frames):\n    "
            + run.error_trace.rstrip().replace("\n", "\n    ")
        )


def check_data_untouched(observation: Observation) -> None:
    """The micro_batches list and its tensors are as they were given: same length, same objects, same values."""
    __tracebackhide__ = True
    require_finished(observation)
    change = observation.run.data_change
    if change is not None:
        raise AssertionError(
            f"the recipe changed the micro-batches it was given: {change}. Callers reuse their data "
            "(the next epoch, evaluation): read micro_batches, never modify or consume it"
        )


def check_finite(observation: Observation) -> None:
    """Every parameter is finite after the recipe wherever the reference's is (inf/NaN steps are skipped).

    A reference that itself overflows (SGD with momentum 0.9 in float32 may, over a few epochs) has
    no finite answer to hold the recipe to: a parameter non-finite in both runs is the training's
    divergence, not the recipe's.
    """
    __tracebackhide__ = True
    require_finished(observation)
    bad = {}
    for name, value in observation.run.final.items():
        nan, inf = int(torch.isnan(value).sum()), int(torch.isinf(value).sum())
        reference = observation.reference.final.get(name)
        diverged = reference is not None and not bool(torch.isfinite(reference).all())
        if (nan or inf) and not diverged:
            bad[name] = f"{nan} NaN and {inf} inf of {value.numel()} values"
    if bad:
        raise AssertionError("the recipe left non-finite parameters: " + "; ".join(f"{n!r} has {v}" for n, v in bad.items()))


def check_steps(observation: Observation) -> None:
    """One optimizer.step() at the end of each window (none for a window whose gradient is non-finite under GradScaler)."""
    __tracebackhide__ = True
    require_finished(observation)
    example, got, want = observation.example, observation.run.step_rows, observation.reference.step_rows
    if got != want:
        called = f"called {plural(len(got), 'time')}, {placements(example, got)}" if got else "never called"
        raise AssertionError(f"optimizer.step() was {called}; expected {plural(len(want), 'step')}, {placements(example, want)}")


def check_no_leak(observation: Observation) -> None:
    """After each optimizer step, the next backward starts from a zero (or None) .grad: nothing leaks into the next window."""
    __tracebackhide__ = True
    require_finished(observation)
    leaks = observation.run.leaks
    if leaks:
        first = leaks[0]
        where = f"after optimizer step {first.after_step}"
        if first.epoch:
            since = f"after optimizer step {first.after_step}, " if first.after_step else ""
            where = f"at the start of epoch {first.epoch} ({since}the recipe called again on the same model)"
        raise AssertionError(
            f"gradients leak across windows: {where}, the next backward added onto "
            f".grad of {first.name!r} still holding max |value| {first.magnitude:.6g} (expected None or zeros); "
            f"{plural(len(leaks), 'leak')} in all"
        )


def scheduled_lrs(example: RecipeCase, count: int) -> list[tuple[float, ...]]:
    """The learning rates a fresh scheduler of this kind gives for steps 1 … count, read off a real StepLR."""
    optimizer = example.optimizer.build([torch.zeros(1, requires_grad=True)])
    scheduler = make_scheduler(optimizer)
    lrs = []
    for _ in range(count):
        lrs.append(tuple(group["lr"] for group in optimizer.param_groups))
        optimizer.step()
        scheduler.step()
    return lrs


def check_scheduler(observation: Observation) -> None:
    """Step i uses the scheduler's i-th learning rate, and scheduler.step() runs once per optimizer step taken."""
    __tracebackhide__ = True
    require_finished(observation)
    run, example = observation.run, observation.example
    want = scheduled_lrs(example, len(run.steps))
    for i, (step, lrs) in enumerate(zip(run.steps, want), start=1):
        if step.lrs != lrs:
            raise AssertionError(
                f"optimizer step {i} used lr {list(step.lrs)}; the scheduler's value {i} is {list(lrs)} "
                f"(StepLR halves it per scheduler.step(), γ={SCHEDULER_GAMMA}); "
                f"scheduler.step() ran {plural(run.scheduler_steps, 'time')} for {plural(len(run.steps), 'optimizer step')}"
            )
    if run.scheduler_steps != len(run.steps):
        raise AssertionError(
            f"scheduler.step() ran {plural(run.scheduler_steps, 'time')} for {plural(len(run.steps), 'optimizer step')}: "
            "expected once after every optimizer step taken"
        )


def check_scale(observation: Observation) -> None:
    """The loss scale after each window: backed off once for a window with a non-finite micro-step, grown otherwise."""
    __tracebackhide__ = True
    require_finished(observation)
    got, want = observation.run.scales, observation.reference.scales
    if got != want:
        bad = [j + 1 for j in observation.example.non_finite]
        raise AssertionError(
            f"GradScaler's scale after each scaler.update() was {got}; expected {want} "
            f"(one update per window: ×0.5 for a window with an inf/NaN{f' (micro-batch {bad})' if bad else ''}, ×2 otherwise)"
        )


def diverged(gradient, tolerances: dict[str, Tolerance]) -> bool:
    """Whether the full-batch gradient at the recipe's parameters, or its bound, is not finite (the training diverged)."""
    values = [g for g in gradient.values() if g is not None]
    limits = [t for t in tolerances.values() if t is not None]
    return not all(bool(torch.isfinite(dense(g)).all()) for g in values) or not all(
        math.isfinite(t.atol) and math.isfinite(t.rtol) for t in limits
    )


def check_step_gradients(observation: Observation) -> None:
    """The gradient at each step is the mean-loss gradient of its window's samples, at the parameters the recipe had then.

    A step whose full-batch gradient (or its bound) at the recipe's parameters is not finite has no finite
    answer to hold the recipe to (SGD with momentum 0.9 may diverge over a few epochs, even in float64):
    it is not compared, and the finite property judges the divergence against the reference run.
    """
    __tracebackhide__ = True
    require_finished(observation)
    example = observation.example
    for i, step in enumerate(observation.run.steps):
        expected = observation.expected(i)
        where = placements(example, [step.rows])
        if expected.stop == expected.start:
            raise AssertionError(f"optimizer step {i + 1} ({where}) came with no new sample through the model since the last")
        tolerance = gradient_tolerance(example, expected)
        if diverged(expected.gradient, tolerance):
            continue
        assert_grads_close(
            step.grads,
            expected.gradient,
            tolerance=tolerance,
            context=f"optimizer step {i + 1} ({where}), expected the mean-loss gradient of its window's "
            f"rows {expected.start + 1}–{expected.stop}"
            + (f", clipped to max_norm={example.clip_norm}" if example.clip_norm is not None else ""),
            what=f"step {i + 1}'s .grad",
        )


REPLAYED = dataclasses.replace(EXACT, reason="bitwise: the same operations on the same numbers", equal_nan=True)


def replayed_step(optimizer: torch.optim.Optimizer, model: torch.nn.Module, step, lrs: tuple[float, ...]) -> dict:
    """θ' = the optimizer's update of the step's recorded θ with its recorded .grad at learning rates `lrs` (state carried)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(step.params[name])
            grad = step.grads.get(name)
            p.grad = None if grad is None else grad.clone()
    for group, lr in zip(optimizer.param_groups, lrs):
        group["lr"] = lr
    optimizer.step()
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def check_parameters(observation: Observation) -> None:
    """One optimizer step per window, and nothing else, moves the parameters: after each step they are bitwise
    the optimizer's update of the parameters and .grad the step was given, at the full-batch run's learning rate.

    With the gradient property (each step's .grad is its window's mean-loss gradient at the recipe's own
    parameters, within a sound bound) this makes the run one full-batch step per window. The replay is an
    identity: a second optimizer of the same class and hyper-parameters applies the same IEEE operations to
    bitwise the same parameters, gradients and (stepped with the same gradients) state. Comparing with a
    separate full-batch trajectory instead would need a bound on how two runs drift apart over many steps,
    and none is sound (momentum and Adam's m̂/(√v̂ + ε) amplify a rounding by up to η/ε).
    """
    __tracebackhide__ = True
    require_finished(observation)
    run, reference, example = observation.run, observation.reference, observation.example
    if len(run.steps) != len(reference.steps):
        raise AssertionError(
            f"the recipe took {plural(len(run.steps), 'optimizer step')}; one full-batch step per window "
            f"takes {len(reference.steps)}"
        )
    model = example.build_model()
    optimizer = example.optimizer.build(model.parameters())
    after = [step.params for step in run.steps[1:]] + [run.final]
    if not run.steps:
        initial = {name: p.detach().clone() for name, p in model.named_parameters()}
        assert_grads_close(run.final, initial, tolerance=REPLAYED, context="no optimizer step was due", what="final value")
    for i, (step, want, params) in enumerate(zip(run.steps, reference.steps, after)):
        where = placements(example, [step.rows])
        following = f"before optimizer step {i + 2}" if i + 1 < len(run.steps) else "at the end"
        assert_grads_close(
            params,
            replayed_step(optimizer, model, step, want.lrs),
            tolerance=REPLAYED,
            context=f"the parameters {following} vs optimizer step {i + 1} ({where}) replayed on the .grad it was "
            f"given, at lr {', '.join(f'{lr:.6g}' for lr in want.lrs)}; a change outside optimizer.step(), "
            "or a learning rate off the schedule",
            what=f"parameter after optimizer step {i + 1}",
        )


@dataclass(frozen=True)
class RecipeProperty:
    """A named property of recipes: the sentence it proves, its check, and which examples it applies to."""

    name: str
    sentence: str
    check: Callable[[Observation], None]
    needs: str | None = None

    def applies(self, example) -> bool:
        """Whether the property applies: always, or when the example (or options) switch its extra on."""
        return self.needs is None or bool(getattr(example, self.needs))


PROPERTIES = (
    RecipeProperty("runs", "the recipe runs without raising", check_runs),
    RecipeProperty("data", "the recipe leaves its micro-batches untouched", check_data_untouched),
    RecipeProperty("finite", "every parameter stays finite", check_finite),
    RecipeProperty("steps", "one optimizer step at the end of each window", check_steps),
    RecipeProperty("leaks", "no gradient leaks from one window into the next", check_no_leak),
    RecipeProperty("scheduler", "the scheduler steps once per optimizer step", check_scheduler, "scheduler"),
    RecipeProperty(
        "scale",
        "a non-finite micro-step skips its whole window and backs the scale off once",
        check_scale,
        "scaler",
    ),
    RecipeProperty("gradients", "each step uses the mean-loss gradient of its window's samples", check_step_gradients),
    RecipeProperty("parameters", "the final parameters equal one full-batch step per window", check_parameters),
)
BY_NAME = {prop.name: prop for prop in PROPERTIES}


def failing(observation: Observation, properties=PROPERTIES) -> list[tuple[RecipeProperty, AssertionError]]:
    """(property, the AssertionError its check raised) for every applicable property that fails on this observation, in order."""
    result = []
    for prop in properties:
        if prop.applies(observation.example):
            try:
                prop.check(observation)
            except AssertionError as error:
                result.append((prop, error))
    return result
