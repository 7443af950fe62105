"""Pipeline schedules are accumulation: every stage's .grad after T step() calls = ∇(1/c)·Σ over all T·N rows of ‖ŷ − y‖².

c = (m·d_out for a mean loss)·(n·T for a loss ÷ (n·T))·(n with scale_grads=True), one process's
gradient of the unsplit model over the same rows; each stage is compared on its own parameters.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from hypothesis import strategies as st

from properties import bounds, defects
from properties import grads as G
from properties.compare import Tolerance, assert_grads_close, assert_tensor_close, gamma, unit_roundoff
from properties.distributed.pipeline import PLACEMENTS, PipelineCase, PipelineRecord, known_schedules, layer_names
from properties.distributed.pool import RankPool
from properties.models import ACTIVATIONS, ModelSpec
from properties.strategies import as_strategy, seeds

WORLD_SIZES = (2, 3, 4)
LEARNING_RATES = (0.1, 0.5)
ONE_STEP_LOSSES = (("mean", True), ("sum", False), ("mean", False), ("sum", True))
OUTER_LOSSES = (("mean/(n·T)", False), ("sum", False), ("mean", False))
FUSED = "ScheduleLoopedBFS"
"""The reference for the split backward: a schedule with one fused backward per micro-batch and stage, for any stage split."""
ADAM_EPS = 1e-8
ADAM_ROUNDINGS = 12
"""Adam's first step from g: m, v, the two bias corrections, √, + ε, the division: at most 12 roundings on m̂/(√v̂ + ε)."""


@st.composite
def pipeline_cases(
    draw,
    *,
    schedule=None,
    world_size=None,
    steps=st.just(1),
    scale_grads_across_steps: bool = False,
    optimizers=("SGD", "Adam"),
    activations=tuple(sorted(ACTIVATIONS)),
    bias=st.booleans(),
) -> PipelineCase:
    """A drawn schedule, world size, placement, MLP or DeepMLP (`activations`, `bias`) split at drawn layers, n (1–8, the
    schedule's own constraints), m (1–2 rows), loss and scale_grads (T ≥ 2 only the right way unless
    `scale_grads_across_steps`), SGD or Adam."""
    name = draw(st.sampled_from(known_schedules()) if schedule is None else as_strategy(schedule))
    placement = PLACEMENTS[name]
    ranks = draw(st.sampled_from(WORLD_SIZES) if world_size is None else as_strategy(world_size))
    per_rank = draw(st.sampled_from(placement.stages_per_rank))
    stages = ranks * per_rank
    activation = draw(st.sampled_from(activations))
    bias = draw(as_strategy(bias))
    features = [draw(st.integers(1, 3)) for _ in range(3)]
    if stages == 2 and draw(st.booleans()):
        spec = ModelSpec("mlp", features[0], features[1], hidden=features[2], activation=activation, bias=bias)
    else:
        depth = draw(st.integers(max(stages, 2), stages + 2))
        spec = ModelSpec("deep", features[0], features[1], hidden=features[2], depth=depth, activation=activation, bias=bias)
    layers = len(layer_names(spec))
    cuts = sorted(draw(st.sets(st.integers(1, layers - 1), min_size=stages - 1, max_size=stages - 1)))
    n = draw(st.integers(1, 8).filter(lambda n: placement.admits(n, ranks, per_rank)))
    m = draw(st.integers(1, 2))
    t = draw(steps)
    if t == 1:
        loss, scale = draw(st.sampled_from(ONE_STEP_LOSSES))
    elif scale_grads_across_steps:
        loss, scale = draw(st.sampled_from(("mean", "sum"))), True
    else:
        loss, scale = draw(st.sampled_from(OUTER_LOSSES))
    return PipelineCase(
        spec,
        name,
        ranks,
        per_rank,
        (0, *cuts, layers),
        n,
        n * m,
        loss=loss,
        scale_grads=scale,
        steps=t,
        optimizer=draw(st.sampled_from(optimizers)),
        lr=draw(st.sampled_from(LEARNING_RATES)),
        seed=draw(seeds()),
    )


def default_scale_grads_outer_cases():
    """The deviation's configuration: scale_grads=True, n ≥ 2, T = 2…4; tanh with biases, so that no step's gradient
    is exactly zero (dead ReLU units could make g₁ = 0, and then g₁/n + g₂ = g₁ + g₂ would show no deviation)."""
    drawn = pipeline_cases(steps=st.integers(2, 4), scale_grads_across_steps=True, activations=("tanh",), bias=True)
    return drawn.filter(lambda case: case.n_microbatches >= 2 and not defects.PIPELINE_V_SCHEDULE_SELF_SEND.hit(case))


def outer_cases(**kwargs):
    """T = 2…4 outer step() calls, accumulated the right way; a configuration a registered defect hits is left to its xfail."""
    return sound_cases(steps=st.integers(2, 4), **kwargs)


def sound_cases(**kwargs):
    """pipeline_cases(**kwargs) but a configuration a registered defect hits on this torch, which is left to its xfail."""
    return pipeline_cases(**kwargs).filter(lambda case: not defects.registered(case))


def v_schedule_cases():
    """The V-shaped schedules (two adjacent stages on the last rank) on 2–4 ranks: PIPELINE_V_SCHEDULE_SELF_SEND's configuration."""
    return pipeline_cases(
        schedule=st.deferred(lambda: st.sampled_from([name for name in known_schedules() if PLACEMENTS[name].shape == "v"]))
    )


ANY_PIPELINES = sound_cases()
OUTER_PIPELINES = outer_cases()


def split_backward_schedules() -> list[str]:
    """The exported schedules that split the backward into input and weight gradients (the zero-bubble ones)."""
    return [name for name in known_schedules() if PLACEMENTS[name].split_backward]


def drawable_split_backward_schedules() -> list[str]:
    """The split-backward schedules this torch exports that no registered defect leaves to its xfail (may be empty)."""
    from properties.distributed.pipeline import unavailable_reason

    if unavailable_reason() is not None:
        return []
    return [name for name in split_backward_schedules() if not defects.registered(SimpleNamespace(schedule=name))]


SPLIT_BACKWARD_PIPELINES = sound_cases(schedule=st.deferred(lambda: st.sampled_from(drawable_split_backward_schedules())))


def merged(records: list[PipelineRecord], which: str) -> dict[str, torch.Tensor | None]:
    """Every rank's stage parameters in one map; each full-model parameter must be held by exactly one rank."""
    out: dict[str, torch.Tensor | None] = {}
    for record in records:
        for name, value in record.tensors(which).items():
            if name in out:
                raise AssertionError(f"parameter {name} is held by two ranks' stages; each stage's layers must be its own")
            out[name] = value
    return out


def full_batch_gradient(case: PipelineCase) -> G.GradMap:
    """∇(1/c)·Σ‖model(x) − y‖² over all T·N rows of the unsplit model, in one process."""
    model = case.data().build_model()
    x, y = case.data().full_batch()
    loss = torch.nn.functional.mse_loss(model(x), y, reduction="sum") / case.count
    return G.fresh_gradients(model, loss)


def gradient_tolerances(case: PipelineCase) -> dict[str, Tolerance]:
    """2·γ_K·M from the replay over all T·N rows (`bounds.mse_gradient_bound`), plus the schedule's own roundings.

    Each stage adds n·T micro-batch gradients into .grad and the schedule divides by n: the
    accumulation's `bounds.accumulation_roundings(n·T)`, plus one for the loss's ÷(n·T) and one for
    the schedule's ÷n. Activations and their gradients cross stages through send/recv, exactly.
    """
    model = case.data().build_model()
    x, y = case.data().full_batch()
    bound = bounds.mse_gradient_bound(case.model, model, x, y, count=case.count, dtype=case.dtype)
    return bound.tolerances(bounds.accumulation_roundings(case.n_microbatches * case.steps) + 2)


def loss_tolerance(case: PipelineCase, x: torch.Tensor, y: torch.Tensor) -> Tolerance:
    """One micro-batch's loss computed twice: 2·γ_K·M, the replayed forward, (ŷ − y)², its sum and the loss's scale."""
    replay = bounds.Replay(case.dtype)
    prediction, _ = bounds.model_outputs(case.model, case.data().build_model(), x, replay)
    difference = replay.add(prediction, replay.exact(y), -1.0)
    squares = replay.mul(difference, difference)
    flat = bounds.Mag(squares.value.reshape(-1), squares.size.reshape(-1), squares.depth)
    total = replay.total(flat, 0)
    depth = total.depth + 2  # ÷ (m·d_out) for a mean, ÷ (n·T) for the outer scaling
    u = unit_roundoff(case.dtype)
    magnitude = float(total.size) + replay.tiny
    return Tolerance(0.0, 2 * gamma(depth, u) * magnitude, f"2·γ_{depth}·M, M = Σ replayed (|ŷ| + |y|)² = {magnitude:.3g}")


def micro_batch_losses(case: PipelineCase) -> list[list[tuple[torch.Tensor, Tolerance]]]:
    """Per step, per micro-batch: ℓ_j of the unsplit model in one process, and its tolerance."""
    model = case.data().build_model()
    out = []
    for x, y in case.step_batches():
        step = []
        for xj, yj in zip(torch.split(x, case.micro_rows), torch.split(y, case.micro_rows)):
            with torch.no_grad():
                value = case.loss_value(model(xj), yj)
            step.append((value, loss_tolerance(case, xj, yj)))
        out.append(step)
    return out


def check_every_stage_holds_the_full_batch_gradient(pool: RankPool, case: PipelineCase) -> None:
    """After T step() calls every stage's .grad = ∇(1/c)·Σ over all T·N rows, the unsplit model's gradient in one process."""
    __tracebackhide__ = True
    records = pool.run(case)
    expected = full_batch_gradient(case)
    actual = merged(records, "grads")
    assert_grads_close(
        actual,
        expected,
        tolerance=gradient_tolerances(case),
        context=f"{case}; the stages' .grad after {case.steps} step() call(s), expected the one-process gradient of "
        f"(1/{case.count:g})·Σ‖ŷ − y‖² over all {case.rows * case.steps} rows",
    )


def check_split_backward_matches_fused(pool: RankPool, case: PipelineCase) -> None:
    """A zero-bubble schedule's backward (input grads, then weight grads) leaves each stage the .grad of a fused backward."""
    __tracebackhide__ = True
    from dataclasses import replace

    fused = replace(case, schedule=FUSED)
    split_grads = merged(pool.run(case), "grads")
    fused_grads = merged(pool.run(fused), "grads")
    assert_grads_close(
        split_grads,
        fused_grads,
        tolerance=gradient_tolerances(case),
        context=f"{case}; split backward (actual) vs {FUSED}'s fused backward on the same stages (expected)",
    )


def check_returned_losses_are_the_micro_batch_losses(pool: RankPool, case: PipelineCase) -> None:
    """step(losses=[]) on the last stage returns ℓ_j of each micro-batch j, in order, computed on the unsplit model."""
    __tracebackhide__ = True
    records = pool.run(case)
    holder = [r for r in records if case.stages - 1 in case.rank_stages(r.rank)]
    expected = micro_batch_losses(case)
    for record in records:
        if record not in holder and any(record.losses):
            raise AssertionError(f"rank {record.rank} holds no last stage yet returned losses {record.losses}; case: {case}")
    (record,) = holder
    for t, (got, want) in enumerate(zip(record.losses, expected)):
        if len(got) != len(want):
            raise AssertionError(
                f"step {t + 1} returned {len(got)} losses, expected one per micro-batch ({case.n_microbatches}); case: {case}"
            )
        for j, (value, (reference, tolerance)) in enumerate(zip(got, want)):
            assert_tensor_close(
                torch.tensor(value, dtype=case.dtype),
                reference,
                name=f"loss of micro-batch {j} in step {t + 1}",
                tolerance=tolerance,
                context=f"{case}; the losses step(losses=[]) returned vs each micro-batch's loss on the unsplit model",
            )


def full_batch_step(case: PipelineCase) -> dict[str, torch.Tensor]:
    """The optimizer's first step (SGD or Adam, lr) on the unsplit model from the full-batch gradient, in one process."""
    model = case.data().build_model()
    gradient = full_batch_gradient(case)
    for name, parameter in model.named_parameters():
        parameter.grad = gradient[name]
    optimizer = torch.optim.SGD if case.optimizer == "SGD" else torch.optim.Adam
    optimizer(model.parameters(), lr=case.lr).step()
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def step_tolerances(case: PipelineCase) -> dict[str, Tolerance]:
    """SGD: lr·(the gradient's bound) + 2u·max|θ|. Adam's first step θ − lr·g/(|g| + ε): |∂/∂g| ≤ 1/ε and |·| ≤ 1, so
    lr·min(2, δ/ε) for gradients δ apart, plus 2·γ_12 of lr for its own roundings and 2u·(max|θ| + lr)."""
    model = case.data().build_model()
    u = unit_roundoff(case.dtype)
    result = {}
    for name, tolerance in gradient_tolerances(case).items():
        theta = float(dict(model.named_parameters())[name].detach().abs().max())
        if case.optimizer == "SGD":
            atol = case.lr * tolerance.atol + 2 * u * theta
            reason = f"lr·({tolerance.reason}) + 2u·max|θ|, max|θ|={theta:.3g}"
        else:
            atol = case.lr * (min(2.0, tolerance.atol / ADAM_EPS) + 2 * gamma(ADAM_ROUNDINGS, u)) + 2 * u * (theta + case.lr)
            reason = f"Adam's first step: lr·min(2, δ/ε) + 2·lr·γ_12 + 2u·(max|θ| + lr), δ = {tolerance.atol:.3g}"
        result[name] = Tolerance(rtol=0.0, atol=atol, reason=reason)
    return result


def check_step_gives_full_batch_step(pool: RankPool, case: PipelineCase) -> None:
    """After the T step() calls and one optimizer step every stage holds the parameters of the full-batch step."""
    __tracebackhide__ = True
    records = pool.run(case)
    actual = merged(records, "params")
    expected = full_batch_step(case)
    tolerances = step_tolerances(case)
    for name, value in expected.items():
        assert name in actual, f"no stage holds parameter {name}; case: {case}"
        assert_tensor_close(
            actual[name],
            value,
            name=name,
            tolerance=tolerances[name],
            context=f"{case}; the stage's parameter after {case.optimizer}.step(), expected the full-batch step",
        )


def accumulated_ratio(case: PipelineCase, records: list[PipelineRecord]) -> float:
    """‖.grad‖ ÷ ‖expected‖ over every stage's parameters: what the deviation's reason reports."""
    actual, expected = merged(records, "grads"), full_batch_gradient(case)
    num = sum(float((a.double() ** 2).sum()) for a in actual.values() if a is not None)
    den = sum(float((e.double() ** 2).sum()) for e in expected.values() if e is not None)
    return (num / den) ** 0.5 if den else float("nan")
