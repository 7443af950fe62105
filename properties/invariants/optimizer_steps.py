"""Optimizer steps: one SGD step is θ − η·∇θ in closed form; every step follows its documented update;
T windows of accumulation give the trajectory and optimizer state of T full-batch steps."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from hypothesis import assume
from hypothesis import strategies as st

from properties import accumulate as A
from properties import grads as G
from properties import reference as R
from properties.case import Case
from properties.compare import EXACT, Tolerance, assert_grads_close, assert_tensor_close, dense, gamma, unit_roundoff
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
ILL_CONDITIONED = 1e-6


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


def gradient_condition(snapshots: Sequence[R.Snapshot], bounds: Sequence[dict[str, Tolerance]]) -> float:
    """ρ = max over steps and nonzero gradient elements of (rounding bound)/|g|: the worst relative error a gradient element can have."""
    rho = 0.0
    for snapshot, bound in zip(snapshots, bounds):
        for name, g in snapshot.grads.items():
            if g is None:
                continue
            values = dense(g).abs()
            nonzero = values[values > 0]
            if nonzero.numel():
                rho = max(rho, bound[name].atol / float(nonzero.min()))
    return rho


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


def absolute_run(
    spec: OptimizerSpec, starts: Sequence[dict], snapshots: Sequence[R.Snapshot]
) -> list[dict[str, dict[str, float]]]:
    """Per step and parameter: 'update' = max η·|direction| and each state entry's magnitude, run on |g| + λ|θ| from the start."""
    running: dict[str, dict] = {}
    result = []
    for t, (start, snapshot) in enumerate(zip(starts, snapshots), start=1):
        step = {}
        for name, g in snapshot.grads.items():
            if g is None:
                continue
            a = dense(g).abs() + spec["weight_decay"] * start[name].abs()
            direction, running[name] = direction_magnitude(spec, a, running.get(name, {}), snapshot.state[name], t)
            step[name] = {"update": spec["lr"] * float(direction.max())}
            step[name].update({key: float(value.max()) for key, value in running[name].items()})
        result.append(step)
    return result


def check_accumulated_trajectory_equals_full_batch(
    case: Case, spec: OptimizerSpec, steps: int, how: str = A.SCALED_MEANS
) -> None:
    """T windows of (zero_grad, accumulate, step) give the parameters and optimizer state of T full-batch steps, at every step.

    Each gradient element is one sum in two orders, so the two differ by at most a relative
    ρ = (Higham bound)/|g| (examples with ρ > 1e-6 are ill-conditioned — rounding could decide the
    sign of Adam's first step — and are excluded with assume()). The optimizers' recurrences are
    linear in g (SGD, m) or in g² (v, relative error 2ρ), and Adam's m̂/(√v̂ + ε) moves by at most
    2ρ·(|m|/(1 − β₁ᵗ))/(√v̂ + ε), so after step t the parameters may differ by
    4·A·ρ·Σ_{s≤t} η·|Δ_s| (A = 1 for SGD, 2 for Adam/AdamW; |Δ_s| the step direction run on
    |g| + λ|θ|; 4 = 2 for feed-through of earlier differences × 2 slack) and each state entry by
    4·A·ρ times its magnitude run on |g|. The .grad each step uses is compared with the full-batch
    gradient at the accumulating run's own parameters before that step, within their replayed bound
    (sound, as in the accumulation property): comparing it with the other trajectory's gradient
    would mix the parameters' drift into it (a soak found a step-2 gradient of AdamW at 2.1× a
    4^(t−1) allowance).

    Not a derived bound for the parameters and state: the feed-through factor (2 per step) is a
    first-order estimate for contracting steps, not a proof. The per-step properties (one step from
    the same θ, .grad and state) carry the sound bounds; this one's measured headroom is in reports/soak.md.
    """
    __tracebackhide__ = True
    ws = A.windows(case, steps)
    accumulating, full = case.build_model(), case.build_model()
    got = A.accumulated_run(accumulating, spec.build_for(accumulating), ws, how)
    want = R.full_batch_run(full, spec.build_for(full), ws)
    scratch = case.build_model()
    starts = [R.parameters(scratch)] + [s.params for s in want[:-1]]
    bounds = [row_tolerances(load(scratch, start), case.model, case.dtype, w) for start, w in zip(starts, ws)]
    rho = gradient_condition(want, bounds)
    if rho > ILL_CONDITIONED:
        assume(False)
    amplification = 1 if spec.name == "SGD" else 2
    magnitudes = absolute_run(spec, starts, want)
    moved = {name: 0.0 for name in starts[0]}
    u = unit_roundoff(case.dtype)
    for t, (a, f, bound, size) in enumerate(zip(got, want, bounds, magnitudes), start=1):
        context = (
            f"{case}; {spec}, step {t} of {steps}: accumulated {A.PROCEDURES[how]} vs full-batch steps; "
            f"gradient condition ρ={rho:.3g}"
        )
        if t == 1:
            expected, grad_tol = f.grads, bound
        else:
            here = load(scratch, got[t - 2].params)
            expected = R.full_batch_gradients(here, ws[t - 1])
            grad_tol = row_tolerances(here, case.model, case.dtype, ws[t - 1])
        assert_grads_close(
            a.grads,
            expected,
            tolerance=grad_tol,
            context=context + "; .grad vs the full-batch gradient at its own θ",
            what=f".grad at step {t}",
        )
        for name, value in f.params.items():
            if name not in size:
                assert_tensor_close(a.params[name], value, name=f"frozen parameter {name!r}", tolerance=EXACT, context=context)
                continue
            moved[name] += size[name]["update"]
            allowed = 4 * amplification * rho * moved[name]
            tol = Tolerance(4 * t * u, allowed, f"4·{amplification}·ρ·Σ η|Δ| = 4·{amplification}·{rho:.3g}·{moved[name]:.3g}")
            assert_tensor_close(a.params[name], value, name=f"parameter {name!r} after step {t}", tolerance=tol, context=context)
            tolerances = {
                key: Tolerance(
                    4 * t * u, 4 * amplification * rho * size[name].get(key, 0.0), f"4·{amplification}·ρ·|{key}| run on |g|"
                )
                for key in f.state[name]
            }
            compare_state(a.state[name], f.state[name], tolerances, where=f"of {name!r} after step {t}", context=context)
