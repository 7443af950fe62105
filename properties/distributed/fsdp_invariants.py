"""FSDP2 accumulation: k − 1 backward calls with gradient sync off and one with it on give every rank the full-batch gradient.

Scaling: as for DDP (properties.distributed.invariants), rank r weights its micro-batch j's mean
loss by w_rj = W·m_rj/N and FSDP2 averages the reduce-scattered gradients over the W ranks, so
the sharded gradient, gathered, is (1/W)·Σ_r Σ_j w_rj·∇L_rj = ∇L over all N rows.

Rounding: each rank's local sum is DDP's (k + 4 roundings); FSDP2's float64 reduction divides by
2 before the reduce-scatter (exact: a power of two, underflow aside, which the bound's per-operation
smallest normal covers), sums W terms (W − 1 roundings) and divides by W/2 after it (one rounding;
none for W = 2): at most W roundings, within the W + 2 DDP's all-reduce is allowed. Gathering the
shards (`full_tensor()`) and padding uneven shards with zeros are exact. So the DDP window's
bound (`single_process.gradient_tolerances`) holds, and every rank gathers the same bits.
"""

from __future__ import annotations

from hypothesis import strategies as st

from properties.compare import EXACT, assert_grads_close, assert_tensor_close
from properties.distributed.fsdp import FSDPCase, FSDPRecord, units
from properties.distributed.pool import RankPool
from properties.distributed.single_process import full_batch_gradient, full_batch_step, gradient_tolerances, step_tolerances
from properties.distributed.strategies import distributed_cases

WORLD_SIZES = (2, 3)
# fully_shard rejects non-contiguous parameters ("FSDP does not support non-contiguous parameters yet"):
# transposed storage is left out; views of one buffer are contiguous and stay in.
LAYOUTS = ("contiguous", "view")


def fsdp_cases(
    world_size=st.sampled_from(WORLD_SIZES), *, min_k: int = 1, reshard_after_forward=st.booleans(), kinds=("linear", "mlp")
):
    """W ranks, min_k…3 micro-batches each of 1–3 rows, a contiguous Linear or MLP, float64, SGD(lr), reshard_after_forward drawn."""
    windows = distributed_cases(world_size=world_size, k=st.integers(min_k, 3), kinds=kinds, layouts=LAYOUTS)
    return st.builds(FSDPCase, windows, reshard_after_forward)


ANY_FSDP = fsdp_cases()
SPLIT_FSDP = fsdp_cases(min_k=2)
# fully_shard keeps the root's parameters gathered after forward whatever reshard_after_forward says,
# so only a model with units below the root (an MLP's layers) tells the two settings apart.
RESHARDED_FSDP = fsdp_cases(reshard_after_forward=st.just(True), kinds=("mlp",))


def assert_ranks_identical(records: list[FSDPRecord], which: str, case: FSDPCase, what: str) -> None:
    """Every rank gathered bitwise the same `which` (full_tensor() is an all-gather of one set of shards)."""
    __tracebackhide__ = True
    reference = records[0].tensors(which)
    for record in records[1:]:
        for name, value in record.tensors(which).items():
            if value is None or reference[name] is None:
                if value is not reference[name]:
                    raise AssertionError(f"{what} {name!r}: None on one of ranks 0 and {record.rank} only; case: {case}")
                continue
            assert_tensor_close(
                value,
                reference[name],
                name=f"{what} {name!r} on rank {record.rank} vs rank 0",
                tolerance=EXACT,
                context=f"{case}; full_tensor() gathers the same shards on every rank",
            )


def check_window_gives_full_batch_gradient(pool: RankPool, case: FSDPCase) -> None:
    """After the window every rank's p.grad.full_tensor() = ∇L of the mean loss over all N rows (one process), bitwise alike on all ranks."""
    __tracebackhide__ = True
    records = pool.run(case)
    assert_ranks_identical(records, "grads", case, "full .grad of")
    assert_grads_close(
        records[0].tensors("grads"),
        full_batch_gradient(case.window),
        tolerance=gradient_tolerances(case.window),
        context=f"{case}; rank 0's p.grad.full_tensor() after the window, "
        "expected the single-process gradient of the mean loss over all N rows",
    )


def check_one_reduce_scatter_per_unit_per_window(pool: RankPool, case: FSDPCase) -> None:
    """No reduction while gradient sync is off; the synced backward reduce-scatters each FSDP unit's gradients exactly once."""
    __tracebackhide__ = True
    records = pool.run(case)
    expected = sorted(names for _, names in units(case.window.case.build_model()) if names)
    for record in records:
        where = f"rank {record.rank}; case: {case}"
        for call, reductions in enumerate(record.reductions[:-1], start=1):
            if reductions:
                raise AssertionError(
                    f"backward {call} of {case.k} ran with set_requires_gradient_sync(False) yet reduced "
                    f"{len(reductions)} FSDP unit(s) {[names for names, _ in reductions]}; expected no communication "
                    f"before the window ends; {where}"
                )
        last = record.reductions[-1]
        reduced = sorted(names for names, _ in last)
        counts = [count for _, count in last]
        if reduced != expected or any(count != 1 for count in counts):
            raise AssertionError(
                f"the synchronised backward ({case.k} of {case.k}) reduced {len(last)} FSDP unit(s) {reduced} "
                f"with {counts} reduce-scatter(s) each; expected one reduce-scatter per unit, for the units {expected}; {where}"
            )


def check_step_matches_full_batch_step(pool: RankPool, case: FSDPCase) -> None:
    """After SGD on the sharded parameters, full_tensor() of each = θ − lr·∇L of one process, bitwise alike on all ranks."""
    __tracebackhide__ = True
    records = pool.run(case)
    assert_ranks_identical(records, "params", case, "full parameter")
    assert_grads_close(
        records[0].tensors("params"),
        full_batch_step(case.window),
        tolerance=step_tolerances(case.window),
        what="parameter after the step",
        context=f"{case}; rank 0's full_tensor() after SGD on the shards, expected θ − lr·∇L of the single-process full batch",
    )


def check_reshard_after_forward_agrees(pool: RankPool, case: FSDPCase) -> None:
    """reshard_after_forward True and False give the same gradient and step within 2·γ_K·M (both within γ_K·M of ∇L).

    Both see bitwise-equal unsharded parameters (an all-gather copies) and run the same operations;
    they differ only in the buffers that hold them, and CPU BLAS kernels may pick code paths by
    alignment, so bitwise equality is not promised: the window bound applies to each, hence to both.
    """
    __tracebackhide__ = True
    on = pool.run(FSDPCase(case.window, reshard_after_forward=True))
    off = pool.run(FSDPCase(case.window, reshard_after_forward=False))
    for which, tolerance, what in (
        ("grads", gradient_tolerances(case.window), ".grad (full_tensor)"),
        ("params", step_tolerances(case.window), "parameter after the step"),
    ):
        for a, b in zip(on, off):
            assert_grads_close(
                a.tensors(which),
                b.tensors(which),
                tolerance=tolerance,
                what=what,
                context=f"{case.window!r}; rank {a.rank}: reshard_after_forward=True (actual) vs False (expected)",
            )
