"""Optimizer steps: one SGD step is θ − η·∇θ in closed form; every step follows its documented update;
T windows of accumulation give the trajectory and optimizer state of T full-batch steps."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from hypothesis import strategies as st

from properties import accumulate as A
from properties import grads as G
from properties import reference as R
from properties.case import Case
from properties.compare import Tolerance, assert_grads_close, assert_tensor_close, dense, gamma, unit_roundoff
from properties.invariants.equivalence import load, row_tolerances
from properties.optimizers import FAMILIES, OptimizerSpec, adam_specs, named_state, sgd_specs
from properties.strategies import batch_splits, cases, model_specs, step_counts

LINEAR_CASES = cases(models=model_specs(["linear"]), sizes=batch_splits(max_k=3))
LRS = st.sampled_from([0.1, 0.01, 0.3])
DENSE_CASES = cases(models=model_specs(sparse=False), sizes=batch_splits(max_k=3))
FAMILY_NAMES = tuple(FAMILIES)
TRAJECTORY_SPECS = st.one_of(sgd_specs(momentum=True), adam_specs("Adam"), adam_specs("AdamW"))
STEPS = step_counts(min_value=2, max_value=4)
LONG_STEPS = step_counts(min_value=2, max_value=4, large_value=20)
"""Mostly 2–4 steps; one example in LARGE_SHARE runs up to 20 (step counters, bias corrections late in a run)."""
GROUPS = st.integers(1, 3)
HOWS = st.sampled_from(A.CORRECT)


def check_one_sgd_step_is_closed_form(case: Case, lr: float) -> None:
    """Accumulate the window, one SGD(lr) step: W ← W − η·∂L/∂W and b ← b − η·∂L/∂b with the closed-form MSE gradient."""
    __tracebackhide__ = True
    model = case.build_model()
    start = R.LinearParams.of(model)
    batches = case.micro_batches()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    A.accumulate(model, batches)
    optimizer.step()
    x, y = R.concatenated(batches)
    gradient = R.mse_gradients(start, x, y)
    expected = start.minus({name: lr * g for name, g in gradient.items()}).named()
    n = case.model.in_features + case.rows + len(case.sizes) + 8
    u = unit_roundoff(case.dtype)
    magnitudes = R.mse_gradient_magnitudes(start, x, y)
    for name, p in model.named_parameters():
        atol = 2 * (gamma(n, u) * lr * float(np.max(magnitudes[name])) + 2 * u * float(np.max(np.abs(expected[name]))))
        assert_tensor_close(
            p.detach(),
            torch.from_numpy(expected[name]),
            name=f"parameter {name!r} after one SGD(lr={lr}) step",
            tolerance=Tolerance(0.0, atol, f"2·(γ_{n}·η·|gradient terms| + 2u·|θ|), u={u:.3g}"),
            context=f"{case}; expected θ − η·(2/(N·d_out))·Σ(ŷᵢ − yᵢ)xᵢᵀ from the closed form",
        )


def update_tolerances(spec: OptimizerSpec, theta, g, state, expected_state, t: int, dtype) -> dict[str, Tolerance]:
    """For one documented step from the same θ, g and state: ≤ 8 roundings, each relative to |θ|, η·|direction| or |entry|."""
    u = unit_roundoff(dtype)
    rho = 2 * gamma(8, u)
    a = dense(g).abs() + spec["weight_decay"] * theta.abs()
    direction, entries = direction_magnitude(spec, a, state, expected_state, t)
    scale = float(theta.abs().max()) + spec["lr"] * float(direction.max())
    result = {"param": Tolerance(0.0, rho * scale, f"2·γ_8·(|θ| + η·|direction|), u={u:.3g}")}
    for key, value in entries.items():
        result[key] = Tolerance(0.0, rho * float(value.max()), f"2·γ_8·|{key} terms|, u={u:.3g}")
    return result


def compare_state(actual: dict, expected: dict, tolerances: dict, *, where: str, context: str) -> None:
    """Every state entry present on both sides, each within its tolerance; 'step' exactly."""
    if set(actual) != set(expected):
        raise AssertionError(f"optimizer state keys {sorted(actual)} vs documented {sorted(expected)} {where}; case: {context}")
    for key, value in expected.items():
        got = actual[key].to(value.dtype)
        tol = Tolerance(0.0, 0.0, "a step count is exact") if key == "step" else tolerances[key]
        assert_tensor_close(got, value, name=f"state {key!r} {where}", tolerance=tol, context=context)


def check_step_follows_documented_update(
    case: Case,
    spec: OptimizerSpec,
    steps: int,
    build: Callable[[torch.optim.Optimizer], torch.optim.Optimizer] = lambda o: o,
    groups: int = 1,
) -> None:
    """At every step of T windows, the optimizer's new θ and state equal its documented update applied to its θ, .grad and state.

    `build` may change the optimizer before its first step (compile its step, say); the
    parameters are split into `groups` parameter groups of the same hyper-parameters. A run that
    diverges (θ, .grad or the documented update overflows, as SGD with η = 0.3 and momentum 0.9
    may over 20 steps) is checked up to the step before it: past that, no finite update is documented.
    """
    __tracebackhide__ = True
    model = case.build_model()
    optimizer = build(spec.build_for(model, groups=groups))
    for t, batches in enumerate(A.windows(case, steps), start=1):
        optimizer.zero_grad()
        A.accumulate(model, batches)
        theta, grads, state = R.parameters(model), G.grads(model), named_state(optimizer, model)
        expected_params, expected_state = R.optimizer_update(spec, theta, grads, state)
        if not G.finite(theta, grads, expected_params):
            break
        optimizer.step()
        actual_state = named_state(optimizer, model)
        grouped = f", {groups} parameter groups" if groups > 1 else ""
        context = (
            f"{case}; {spec}{grouped}, step {t} of {steps}: torch's step vs the documented update from the same θ, .grad, state"
        )
        for name, p in model.named_parameters():
            if grads[name] is None:
                continue
            step = int(expected_state[name]["step"]) if "step" in expected_state[name] else t
            tol = update_tolerances(spec, theta[name], grads[name], state[name], expected_state[name], step, case.dtype)
            assert_tensor_close(
                p.detach(),
                expected_params[name],
                name=f"parameter {name!r} after step {t}",
                tolerance=tol["param"],
                context=context,
            )
            compare_state(actual_state[name], expected_state[name], tol, where=f"of {name!r} after step {t}", context=context)


def direction_magnitude(
    spec: OptimizerSpec, a: torch.Tensor, previous: dict, state_after: dict, t: int
) -> tuple[torch.Tensor, dict]:
    """The step direction's recurrence run on a = |g| + λ|θ| and the previous entries' magnitudes: what its rounding errors scale with.

    SGD: |buffer| = μ·|buffer| + (1 − τ)·a, direction a + μ·|buffer| (Nesterov) or |buffer|;
    Adam: |m| = β₁·|m| + (1 − β₁)·a, |v| = β₂·|v| + (1 − β₂)·a², direction (|m|/(1 − β₁ᵗ))/(√v̂ + ε)
    with v̂ from the state after the step.
    """
    o = spec.options
    entries = {}
    if spec.name == "SGD":
        direction = a
        if o["momentum"]:
            buffer = previous.get("momentum_buffer")
            buffer = a if buffer is None else o["momentum"] * buffer.abs() + (1 - o["dampening"]) * a
            entries["momentum_buffer"] = buffer
            direction = a + o["momentum"] * buffer if o["nesterov"] else buffer
        return direction, entries
    beta1, beta2 = o["betas"]
    zeros = torch.zeros_like(a)
    entries["exp_avg"] = (1 - beta1) * a + beta1 * previous.get("exp_avg", zeros).abs()
    # v's terms are (1 − β₂)·g² with g = ∇ + λθ: their rounding scales with a² (a = |∇| + λ|θ|), not with g² after cancellation
    entries["exp_avg_sq"] = (1 - beta2) * a * a + beta2 * previous.get("exp_avg_sq", zeros).abs()
    if "max_exp_avg_sq" in state_after:
        entries["max_exp_avg_sq"] = torch.maximum(previous.get("max_exp_avg_sq", zeros).abs(), entries["exp_avg_sq"])
    v = (
        state_after["max_exp_avg_sq"] if o["amsgrad"] else state_after["exp_avg_sq"]
    )  # the actual v̂: a smaller one divides by less
    return (entries["exp_avg"] / (1 - beta1**t)) / ((v / (1 - beta2**t)).sqrt() + o["eps"]), entries


def replayed_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, params: dict, grads: dict) -> tuple[dict, dict]:
    """θ' and the state after `optimizer` steps `model` from θ = `params` with .grad = `grads` (its own state carried)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(params[name])
            grad = grads.get(name)
            p.grad = None if grad is None else grad.clone()
    optimizer.step()
    return R.parameters(model), named_state(optimizer, model)


REPLAYED = Tolerance(0.0, 0.0, "bitwise: the same optimizer's operations on the same θ, .grad and state")


def check_accumulated_trajectory_equals_full_batch(
    case: Case, spec: OptimizerSpec, steps: int, how: str = A.SCALED_MEANS
) -> None:
    """T windows of (zero_grad, accumulate, step) are T full-batch steps: at every step the .grad is the full-batch
    gradient at the run's own θ, and θ and the optimizer state after the step are the optimizer's step on them.

    Each step's .grad is compared with the full-batch gradient at the parameters the accumulating run had before
    that step, within their replayed bound (sound, as in the accumulation property). The parameters and every state
    entry after the step must be bitwise those of a second optimizer of the same class and hyper-parameters stepped
    on that θ and .grad (its state carried by the same gradients): an identity, the same IEEE operations on the same
    numbers. By induction the run is one optimizer step on the window's full-batch gradient per window, with no bound
    on how two trajectories drift apart — none is sound: momentum and Adam's m̂/(√v̂ + ε) amplify a rounding by up to
    η/ε. A run that diverges (θ or the full-batch gradient overflows) is checked up to the step before it.
    """
    __tracebackhide__ = True
    ws = A.windows(case, steps)
    accumulating = case.build_model()
    got = A.accumulated_run(accumulating, spec.build_for(accumulating), ws, how)
    scratch, replay = case.build_model(), case.build_model()
    replay_optimizer = spec.build_for(replay)
    before = R.parameters(scratch)
    for t, (a, window) in enumerate(zip(got, ws), start=1):
        here = load(scratch, before)
        expected = R.full_batch_gradients(here, window)
        if not G.finite(before, expected):
            break
        context = f"{case}; {spec}, step {t} of {steps}: accumulated {A.PROCEDURES[how]}"
        assert_grads_close(
            a.grads,
            expected,
            tolerance=row_tolerances(here, case.model, case.dtype, window),
            context=context + "; .grad vs the full-batch gradient at its own θ",
            what=f".grad at step {t}",
        )
        params, state = replayed_step(replay, replay_optimizer, before, a.grads)
        assert_grads_close(
            a.params,
            params,
            tolerance=REPLAYED,
            context=context + "; θ vs the optimizer's step replayed on the θ and .grad it had (a change outside step())",
            what=f"parameter after step {t}",
        )
        for name, entries in state.items():
            exact = {key: REPLAYED for key in entries}
            compare_state(a.state[name], entries, exact, where=f"of {name!r} after step {t} (replayed)", context=context)
        before = a.params
