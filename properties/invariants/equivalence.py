"""Accumulated micro-batches equal the full batch: Σⱼ (mⱼ/N)·∇L̄ⱼ = ∇L̄ for any split, window after window."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from hypothesis import strategies as st
from torch import nn

from properties import accumulate as A
from properties import bounds
from properties import grads as G
from properties import reference as R
from properties.case import Case
from properties.compare import EXACT, Tolerance, assert_grads_close, assert_tensor_close, dense
from properties.models import ModelSpec
from properties.optimizers import OptimizerSpec
from properties.strategies import batch_splits, cases, model_specs, step_counts

CASES = cases(models=model_specs(frozen=st.booleans()))
HOWS = st.sampled_from(A.CORRECT)
LINEAR_CASES = cases(models=model_specs(["linear"]), sizes=batch_splits(max_k=3))
WINDOW_CASES = cases(models=model_specs(), sizes=batch_splits(max_k=3))
STEPS = step_counts(min_value=2, max_value=4, large_value=20)
SET_TO_NONE = st.booleans()
WINDOW_OPTIMIZER = OptimizerSpec.of("SGD", lr=0.1)


@st.composite
def equal_splits(draw, max_k: int = 4, max_size: int = 3) -> tuple[int, ...]:
    """(m, m, …, m): k micro-batches of one size."""
    return (draw(st.integers(1, max_size)),) * draw(st.integers(1, max_k))


EQUAL_CASES = cases(sizes=equal_splits())


def repeats_an_index(case: Case) -> bool:
    """Whether some embedding row is looked up more than once in the window."""
    x, _ = case.full_batch()
    return x.unique().numel() < x.numel()


SPARSE_CASES = cases(models=model_specs(["embedding"], sparse=True), sizes=batch_splits(min_k=2)).filter(repeats_an_index)


def row_tolerances(
    model: nn.Module, spec: ModelSpec, dtype: torch.dtype, micro_batches: Sequence[R.Batch]
) -> dict[str, Tolerance]:
    """Per parameter, 2·γ_K·M for the window's mean-loss gradient, however it is split and summed (`properties.bounds`).

    `spec` is a ModelSpec or a LayerCase. M and K come from replaying the window's forward and
    backward on magnitudes at the model's current parameters; an accumulated window adds k + 4
    roundings (k − 1 additions into .grad, the loss scale mⱼ/N or the final division).
    """
    bound = bounds.window_bound(spec, model, micro_batches, dtype)
    return bound.tolerances(bounds.accumulation_roundings(len(micro_batches)))


def describe(case: Case, how: str) -> str:
    """One line: the example and the procedure under test."""
    return f"{case}; accumulated {A.PROCEDURES[how]} vs one backward of the mean loss over all {case.rows} rows"


def check_accumulation_matches_full_batch(case: Case, how: str = A.SCALED_MEANS) -> None:
    """After the k backward calls of procedure `how`, .grad = ∂/∂θ of the mean loss over all N rows."""
    __tracebackhide__ = True
    model = case.build_model()
    batches = case.micro_batches()
    expected = R.full_batch_gradients(case.build_model(), batches)
    A.accumulate(model, batches, how)
    assert_grads_close(
        G.grads(model),
        expected,
        tolerance=row_tolerances(model, case.model, case.dtype, batches),
        context=describe(case, how),
    )


def load(model: nn.Module, params: dict[str, torch.Tensor]) -> nn.Module:
    """Copy `params` into the model's parameters, in place."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(params[name])
    return model


def check_windows_match_full_batch_steps(
    case: Case, steps: int, set_to_none: bool = True, wrap: Callable[[nn.Module], nn.Module] = lambda model: model
) -> None:
    """T windows of (zero_grad, accumulate, SGD step): each window's .grad and step equal the full-batch ones from the same θ.

    Step t is compared with one full-batch backward and θ − η·∇L̄ taken from the parameters the
    accumulating run had before it, so the bound stays the per-window gradient bound (no
    trajectory to bound): .grad within 2·γ_K·M, θ within η·(that) + 2·γ_{2a}·(|θ| + η·|∇L̄|) for
    the a additions of each side's update (a = 2, or 1 + the entries of a sparse .grad). By
    induction the T windows follow T full-batch steps. `wrap` gives the module the windows run
    through (torch.compile(model), say); the reference is always the plain module. A run that
    diverges (parameters or the full-batch reference gradient overflow, as a large model and
    η = 0.1 may over 20 steps) is checked up to the window before it.
    """
    __tracebackhide__ = True
    ws = A.windows(case, steps)
    accumulating = wrap(case.build_model())
    got = A.accumulated_run(accumulating, WINDOW_OPTIMIZER.build_for(accumulating), ws, A.SCALED_MEANS, set_to_none)
    scratch = case.build_model()
    before = R.parameters(scratch)
    lr = WINDOW_OPTIMIZER["lr"]
    u = bounds.unit_roundoff(case.dtype)
    for t, a in enumerate(got, start=1):
        model = load(scratch, before)
        expected = R.full_batch_gradients(model, ws[t - 1])
        if not G.finite(before, expected):
            break
        tolerance = row_tolerances(model, case.model, case.dtype, ws[t - 1])
        context = (
            f"{case}; window {t} of {steps}, zero_grad(set_to_none={set_to_none}), {WINDOW_OPTIMIZER}; "
            "the full-batch step is taken from the accumulating run's parameters before the window"
        )
        assert_grads_close(a.grads, expected, tolerance=tolerance, context=context)
        for name, value in a.params.items():
            g = expected[name]
            if g is None:
                assert_tensor_close(
                    value, before[name], name=f"frozen parameter {name!r} after step {t}", tolerance=EXACT, context=context
                )
                continue
            used = a.grads[name]
            additions = 1 + (used._nnz() if used is not None and used.is_sparse else 1)
            g = dense(g)
            want = before[name] - lr * g
            tol = tolerance[name]
            scale = float(before[name].abs().max()) + lr * float(g.abs().max())
            drift = Tolerance(
                0.0,
                lr * tol.atol + 2 * bounds.gamma(2 * additions, u) * scale,
                f"η·({tol.reason}) + 2·γ_{2 * additions}·(|θ| + η·|∇L̄|), a sparse .grad added entry by entry",
            )
            assert_tensor_close(value, want, name=f"parameter {name!r} after step {t}", tolerance=drift, context=context)
        before = a.params


def check_sparse_embedding_gradients_coalesce_to_dense(case: Case) -> None:
    """Sparse Embedding: the accumulated .grad is sparse and, coalesced, equals the dense model's full-batch gradient."""
    __tracebackhide__ = True
    model = case.build_model()
    batches = case.micro_batches()
    dense_spec = ModelSpec(**{**case.model.__dict__, "sparse": False})
    dense_model = dense_spec.build(dtype=case.dtype, device=case.device, seed=case.seed)
    expected = R.full_batch_gradients(dense_model, batches)
    A.accumulate(model, batches)
    context = f"{case}; repeated indices, {len(batches)} sparse backward calls vs the dense full batch"
    grad = model.embedding.weight.grad
    if grad is None or not grad.is_sparse:
        raise AssertionError(f"Embedding(sparse=True) .grad should be a sparse tensor, got {grad!r}; case: {context}")
    coalesced = grad.coalesce()
    indices = coalesced.indices()
    if indices.shape[1] != indices.unique(dim=1).shape[1]:
        raise AssertionError(f"coalesce() left repeated indices {indices.tolist()}; case: {context}")
    placed = torch.zeros_like(expected["embedding.weight"])
    placed[indices[0]] = coalesced.values()
    assert_grads_close(
        {"embedding.weight": placed},
        expected,
        tolerance=row_tolerances(dense_model, dense_spec, case.dtype, batches),
        context=context,
    )
