"""The tutorial's loops against their closed forms; its second loop against the window-mean update it means to make."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from hypothesis import strategies as st
from torch import nn

from properties import reference as R
from properties import tutorial as tutorial_loops
from properties.accumulate import windows_of
from properties.case import Case, dtype_name
from properties.compare import Tolerance, assert_grads_close, assert_tensor_close, gamma, unit_roundoff
from properties.strategies import cases, model_specs, seeds

SEEDS = seeds()
FIRST_LOOP_DTYPES = st.sampled_from([torch.float64, torch.float32])
ACCUMULATION_STEPS = st.integers(1, 3)


@st.composite
def window_splits(draw, complete: bool):
    """(sizes, accumulation_steps): k micro-batches of 1–3 rows, k a multiple of accumulation_steps when `complete`."""
    steps = draw(ACCUMULATION_STEPS)
    k = steps * draw(st.integers(1, 2)) if complete else draw(st.integers(1, 5))
    return tuple(draw(st.lists(st.integers(1, 3), min_size=k, max_size=k))), steps


def _cases(complete: bool):
    @st.composite
    def draw(draw_):
        sizes, steps = draw_(window_splits(complete))
        case = draw_(cases(models=model_specs(["linear"], max_features=2), sizes=sizes))
        return {"case": case, "accumulation_steps": steps}

    return draw()


COMPLETE_WINDOWS = _cases(complete=True)
ANY_WINDOWS = _cases(complete=False)


def trajectory_bounds(
    start: R.LinearParams,
    steps: Sequence[Sequence[R.Batch]],
    trajectory: Sequence[R.LinearParams],
    lr: float,
    dtype: torch.dtype,
    magnitudes: Callable = R.mse_gradient_magnitudes,
) -> list[float]:
    """After each step s: Σ_{r≤s} 2·γₙ·(|θ_r| + η·Σⱼ magnitudes), n = max rows + 8.

    Each step θ ← θ − η·g(θ) is affine with Jacobian I − η·H, H = Σ (2/m)·[xxᵀ x; xᵀ 1] ⪰ 0, and
    η·‖H‖ < 2 for the tutorial's data and η (checked), so earlier errors are not amplified and
    each step adds its own rounding: ≤ n roundings relative to |θ| + η·(gradient magnitudes).
    """
    u = unit_roundoff(dtype)
    bounds, total, previous = [], 0.0, start
    for batches, after in zip(steps, trajectory):
        hessian = sum(2.0 / len(x) * _augmented_gram(R.array(x)) for x, _ in batches)
        if lr * float(np.linalg.eigvalsh(hessian).max()) >= 2:
            raise ValueError("η·‖H‖ ≥ 2 at this step: the closed-form trajectory is not contracting, so no additive bound")
        n = max(len(x) for x, _ in batches) + 8
        size = max(float(np.max(np.abs(v))) for v in previous.named().values())
        grad = max(float(np.max(m)) for x, y in batches for m in magnitudes(previous, x, y).values())
        total += 2 * gamma(n, u) * (size + lr * grad * len(batches))
        bounds.append(total)
        previous = after
    return bounds


def _augmented_gram(x: np.ndarray) -> np.ndarray:
    """Σᵢ [xᵢ; 1][xᵢ; 1]ᵀ: the Hessian block of Σᵢ (wᵀxᵢ + b − yᵢ)² / 2."""
    augmented = np.hstack([x, np.ones((len(x), 1))])
    return augmented.T @ augmented


def check_first_loop_follows_closed_form(seed: int, dtype: torch.dtype) -> None:
    """The tutorial's first loop (15 per-sample SGD steps on (wx + b − y)²) follows w ← w − 2η·r·x, b ← b − 2η·r, r = wx + b − y."""
    __tracebackhide__ = True
    w0, b0 = tutorial_loops.starting_point(seed)
    model = tutorial_loops.linear_1x1(w0, b0, dtype)
    start = R.LinearParams.of(model)
    x, y = tutorial_loops.tensor(tutorial_loops.FIRST_X, dtype), tutorial_loops.tensor(tutorial_loops.FIRST_Y, dtype)
    records = tutorial_loops.tutorial_first_loop(model, torch.optim.SGD(model.parameters(), lr=tutorial_loops.LR), x, y)
    expected = tutorial_loops.first_loop_closed_form(float(start.weight[0, 0]), float(start.bias[0]), x, y)
    steps = [[(x[i : i + 1], y[i : i + 1])] for _ in range(tutorial_loops.EPOCHS) for i in range(len(x))]
    bounds = trajectory_bounds(
        start, steps, expected, tutorial_loops.LR, dtype, lambda p, xb, yb: R.mse_gradient_magnitudes(p, xb, yb, "sum")
    )
    for record, want, bound in zip(records, expected, bounds):
        assert_tensor_close(
            torch.tensor([record.weight, record.bias], dtype=torch.float64),
            torch.tensor([want.weight[0, 0], want.bias[0]]),
            name=f"(W, b) after epoch {record.epoch}, sample {record.sample}",
            tolerance=Tolerance(0.0, bound, f"Σ of each step's 2·γₙ·(|θ| + η·|gradient terms|), u={unit_roundoff(dtype):.3g}"),
            context=f"the tutorial's first loop in {dtype_name(dtype)} from w={w0:.6g}, b={b0:.6g} (seed {seed}), SGD(lr={tutorial_loops.LR})",
        )


def check_second_loop_follows_its_closed_form(seed: int) -> None:
    """The tutorial's second loop (5 epochs) follows θ ← θ − η·Σⱼ ∇W_j per full window (its ∇W_accumulated), the fifth row never used."""
    __tracebackhide__ = True
    w0, b0 = tutorial_loops.starting_point(seed)
    model = tutorial_loops.linear_1x1(w0, b0)
    start = R.LinearParams.of(model)
    batches = tutorial_loops.tutorial_micro_batches(
        tutorial_loops.tensor(tutorial_loops.SECOND_X), tutorial_loops.tensor(tutorial_loops.SECOND_Y)
    )
    tutorial_loops.tutorial_second_run(model, batches)
    expected = tutorial_loops.second_loop_closed_form(start, batches, tutorial_loops.ACCUMULATION_STEPS)
    steps = windows_of(batches, tutorial_loops.ACCUMULATION_STEPS, keep_short=False) * tutorial_loops.EPOCHS
    bound = trajectory_bounds(start, steps, expected, tutorial_loops.LR, torch.float64)[-1]
    assert_grads_close(
        {name: p.detach() for name, p in model.named_parameters()},
        R.as_tensors(expected[-1].named()),
        tolerance=Tolerance(0.0, bound, "Σ of each step's 2·γₙ·(|θ| + η·|gradient terms|), float64"),
        context=f"the tutorial's second loop, 5 epochs from w={w0:.6g}, b={b0:.6g} (seed {seed}) vs Σⱼ ∇W_j per window, short window dropped",
        what="parameter",
    )


def check_tutorial_loop_matches_window_mean(case: Case, accumulation_steps: int) -> None:
    """One epoch of the tutorial's loop moves θ as SGD on each window's mean loss would (short windows stepped) — false for it when k > 1."""
    __tracebackhide__ = True
    model = case.build_model()
    start = R.LinearParams.of(model)
    batches = case.micro_batches()
    tutorial_loops.tutorial_second_loop(
        model, torch.optim.SGD(model.parameters(), lr=tutorial_loops.LR), batches, nn.MSELoss(), accumulation_steps
    )
    expected = tutorial_loops.window_mean_closed_form(start, batches, accumulation_steps, epochs=1)[-1]
    windows = [len(w) for w in windows_of(batches, accumulation_steps, keep_short=True)]
    moved = {name: p.detach() - torch.from_numpy(start.named()[name]) for name, p in model.named_parameters()}
    wanted = {name: torch.from_numpy(value - start.named()[name]) for name, value in expected.named().items()}
    magnitudes = R.summed([R.mse_gradient_magnitudes(start, x, y) for x, y in batches])
    n = case.rows + case.model.in_features + 16
    tolerance = {
        name: Tolerance(
            0.0,
            4
            * gamma(n, unit_roundoff(case.dtype))
            * (float(np.max(np.abs(start.named()[name]))) + tutorial_loops.LR * len(windows) * float(np.max(m))),
            f"2·γ_{n}·(|θ| + η·|gradient terms|) per window",
        )
        for name, m in magnitudes.items()
    }
    assert_grads_close(
        moved,
        wanted,
        tolerance=tolerance,
        context=(
            f"{case}; accumulation_steps={accumulation_steps}, windows of {windows} micro-batches; the tutorial's "
            f"Σⱼ ∇(mean lossⱼ) per full window (short window never stepped) vs SGD(lr={tutorial_loops.LR}) on each window's mean loss"
        ),
        what="update Δθ",
    )


def check_window_example(example: dict) -> None:
    """check_tutorial_loop_matches_window_mean on a drawn {'case', 'accumulation_steps'} pair."""
    __tracebackhide__ = True
    check_tutorial_loop_matches_window_mean(example["case"], example["accumulation_steps"])


def check_tutorial_data_step_is_k_times_the_window_mean_step(seed: int) -> None:
    """On the tutorial's data, its first step (window of rows 1–2 and 3–4) is k = 2 times SGD's step on the mean over rows 1–4."""
    __tracebackhide__ = True
    w0, b0 = tutorial_loops.starting_point(seed)
    model = tutorial_loops.linear_1x1(w0, b0)
    start = R.LinearParams.of(model)
    batches = tutorial_loops.tutorial_micro_batches(
        tutorial_loops.tensor(tutorial_loops.SECOND_X), tutorial_loops.tensor(tutorial_loops.SECOND_Y)
    )
    tutorial_loops.tutorial_second_run(model, batches, epochs=1)
    window = batches[: tutorial_loops.ACCUMULATION_STEPS]
    mean_step = tutorial_loops.window_mean_closed_form(start, window, tutorial_loops.ACCUMULATION_STEPS, epochs=1)[-1]
    moved = {name: p.detach() - torch.from_numpy(start.named()[name]) for name, p in model.named_parameters()}
    k_times = {
        name: torch.from_numpy(tutorial_loops.ACCUMULATION_STEPS * (value - start.named()[name]))
        for name, value in mean_step.named().items()
    }
    magnitudes = R.summed([R.mse_gradient_magnitudes(start, x, y) for x, y in window])
    n = 2 * tutorial_loops.BATCH_SIZE + 16
    tolerance = {
        name: Tolerance(
            0.0,
            4
            * gamma(n, unit_roundoff(torch.float64))
            * (float(np.max(np.abs(start.named()[name]))) + tutorial_loops.LR * float(np.max(m))),
            f"2·γ_{n}·(|θ| + η·|gradient terms|), float64",
        )
        for name, m in magnitudes.items()
    }
    assert_grads_close(
        moved,
        k_times,
        tolerance=tolerance,
        what="update Δθ",
        context=f"the tutorial's second loop, epoch 1 from w={w0:.6g}, b={b0:.6g} (seed {seed}) vs {tutorial_loops.ACCUMULATION_STEPS} × the window-mean SGD step",
    )


def check_tutorial_data_fifth_row_is_never_used(seed: int) -> None:
    """On the tutorial's data, 5 epochs on rows 1–5 leave θ bitwise where 5 epochs on rows 1–4 do: the short last window is dropped."""
    __tracebackhide__ = True
    w0, b0 = tutorial_loops.starting_point(seed)
    x, y = tutorial_loops.tensor(tutorial_loops.SECOND_X), tutorial_loops.tensor(tutorial_loops.SECOND_Y)
    with_fifth, without = tutorial_loops.linear_1x1(w0, b0), tutorial_loops.linear_1x1(w0, b0)
    tutorial_loops.tutorial_second_run(with_fifth, tutorial_loops.tutorial_micro_batches(x, y))
    tutorial_loops.tutorial_second_run(without, tutorial_loops.tutorial_micro_batches(x[:4], y[:4]))
    assert_grads_close(
        {name: p.detach() for name, p in with_fifth.named_parameters()},
        {name: p.detach() for name, p in without.named_parameters()},
        tolerance=Tolerance(0.0, 0.0, "bitwise: the fifth row should change nothing if it is never stepped"),
        context=f"the tutorial's second loop, 5 epochs from w={w0:.6g}, b={b0:.6g} (seed {seed}): rows 1–5 vs rows 1–4",
        what="parameter",
    )
