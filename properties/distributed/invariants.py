"""DDP accumulation: k − 1 backward calls inside no_sync() and one synced give every rank the full-batch gradient.

Scaling: L = (1/N)·Σᵢ ℓᵢ over the N = Σ_r Σ_j m_rj rows of all ranks, and L_rj is the mean loss of
rank r's micro-batch j. DDP averages gradients over the W ranks, so rank r weights L_rj by
w_rj = W·m_rj/N: then (1/W)·Σ_r Σ_j w_rj·∇L_rj = Σ_r Σ_j (m_rj/N)·∇L_rj = ∇L, also when the
micro-batch sizes differ between micro-batches and between ranks.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import strategies as st

from properties import defects
from properties import grads as G
from properties.compare import (
    EXACT,
    assert_grads_close,
    assert_tensor_close,
)
from properties.distributed import options as O
from properties.distributed.cases import DistributedCase
from properties.distributed.pool import RankPool
from properties.distributed.single_process import (
    full_batch_gradient,
    full_batch_step,
    gradient_tolerances,
    local_terms,
    local_tolerances,
    step_tolerances,
)
from properties.distributed.strategies import ddp_option_cases, ddp_options, distributed_cases
from properties.distributed.window import LOOPS

WORLD_SIZES = (2, 3)
ANY_WORLD_SIZE = st.sampled_from(WORLD_SIZES)


def window_cases(world_size=ANY_WORLD_SIZE, *, min_k: int = 1):
    """W ranks, min_k…3 micro-batches each of 1–3 rows, a Linear or an MLP, float64, SGD(lr ∈ {0.1, 0.5})."""
    return distributed_cases(world_size=world_size, k=st.integers(min_k, 3))


ANY_WINDOWS = window_cases()
SPLIT_WINDOWS = window_cases(min_k=2)


def option_cases(world_size=ANY_WORLD_SIZE, *, min_k: int = 1):
    """Windows under drawn DDP options; a configuration that hits a registered defect is left to that defect's strict xfail."""
    return ddp_option_cases(world_size=world_size, k=st.integers(min_k, 3)).filter(lambda case: not defects.registered(case))


def static_graph_first_no_sync_cases(world_size=ANY_WORLD_SIZE):
    """Windows of k ≥ 2 as the first iteration of a static_graph DDP, the other options drawn (defects.DDP_STATIC_GRAPH_FIRST_NO_SYNC)."""

    def options(micro_batches: int, *, join: bool):
        return ddp_options(micro_batches, join=join).map(lambda o: replace(o, static_graph=True, warmup=False, extra_in=()))

    return ddp_option_cases(world_size=world_size, k=st.integers(2, 3), join=False, options=options)


def static_graph_no_sync_after_warmup_cases(world_size=ANY_WORLD_SIZE):
    """Windows of k ≥ 2 after one synced iteration of a static_graph DDP (defects.DDP_STATIC_GRAPH_NO_SYNC_AFTER_FIRST_ITERATION)."""

    def options(micro_batches: int, *, join: bool):
        return ddp_options(micro_batches, join=join).map(lambda o: replace(o, static_graph=True, warmup=True, extra_in=()))

    return ddp_option_cases(world_size=world_size, k=st.integers(2, 3), join=False, options=options)


def used_only_inside_no_sync_cases(world_size=ANY_WORLD_SIZE):
    """find_unused_parameters, `extra` used only in rank 0's first micro-batch (inside no_sync()) (defects.DDP_FIND_UNUSED_NO_SYNC)."""

    def options(micro_batches: int, *, join: bool):
        drawn = ddp_options(micro_batches, join=join)
        return drawn.map(lambda o: replace(o, static_graph=False, find_unused_parameters=True, extra_in=(0,)))

    return ddp_option_cases(world_size=world_size, k=st.integers(2, 3), join=False, options=options)


def static_graph_join_cases(world_size=ANY_WORLD_SIZE):
    """One micro-batch per rank with data, a static_graph DDP in join() with idle ranks (defects.DDP_STATIC_GRAPH_JOIN_MISMATCH)."""

    def options(micro_batches: int, *, join: bool):
        drawn = ddp_options(micro_batches, join=True).map(lambda o: replace(o, static_graph=True, extra_in=()))
        return drawn.filter(lambda o: o.find_unused_parameters or not o.warmup)

    return ddp_option_cases(world_size=world_size, k=1, join=True, idle=True, options=options)


ANY_OPTIONS = option_cases()
SPLIT_OPTIONS = option_cases(min_k=2)


def check_window_gives_full_batch_gradient(pool: RankPool, case: DistributedCase, loop: str = "global-mean") -> None:
    """After the window every rank's .grad = ∇L, the single-process gradient of the mean loss over all N rows."""
    __tracebackhide__ = True
    records = pool.run(case, loop=loop)[: case.ranks_with_data]
    expected, tolerance = full_batch_gradient(case), gradient_tolerances(case)
    for record in records:
        assert_grads_close(
            record.tensors("synced"),
            expected,
            tolerance=tolerance,
            context=f"{case}; rank {record.rank}'s .grad after the window ({LOOPS[loop]}), "
            "expected the single-process gradient of the mean loss over all N rows",
        )


def check_one_allreduce_per_window(pool: RankPool, case: DistributedCase, loop: str = "global-mean") -> None:
    """No all-reduce inside no_sync(); the synced backward all-reduces each bucket once, covering each parameter once."""
    __tracebackhide__ = True
    records = pool.run(case, loop=loop)[: case.ranks_with_data]
    trainable = sorted(name for name, _ in G.trainable(O.build(case.case, case.options)))
    for record in records:
        where = f"rank {record.rank}, {LOOPS[loop]}; case: {case}"
        for call, syncs in enumerate(record.syncs[:-1], start=1):
            if syncs:
                raise AssertionError(
                    f"backward {call} of {case.k} ran inside no_sync() yet all-reduced {len(syncs)} bucket(s) "
                    f"{[index for index, _ in syncs]}; expected no communication before the window ends; {where}"
                )
        last = record.syncs[-1]
        buckets = sorted(index for index, _ in last)
        covered = sorted(name for _, names in last for name in names)
        if buckets != list(range(len(buckets))) or covered != trainable:
            raise AssertionError(
                f"the synchronised backward ({case.k} of {case.k}) all-reduced {len(last)} bucket(s) {buckets} "
                f"holding {covered}; expected one all-reduce per bucket, together holding each trainable "
                f"parameter once: {trainable}; {where}"
            )


def identical(a, b) -> bool:
    """Both None, or equal tensors (a parameter no micro-batch has used yet holds .grad None)."""
    return a is None and b is None or a is not None and b is not None and a.equal(b)


def check_gradients_stay_local_inside_no_sync(pool: RankPool, case: DistributedCase) -> None:
    """Inside no_sync() rank r's .grad = Σ_{j<k} w_rj·∇L_rj, its own micro-batches only, so ranks differ."""
    __tracebackhide__ = True
    assert case.k >= 2, "needs at least one backward call inside no_sync()"
    records = pool.run(case)[: case.ranks_with_data]
    terms = [local_terms(case, rank, case.k - 1) for rank in range(case.ranks_with_data)]
    expected = [G.combine(rank_terms) for rank_terms in terms]
    inside = [record.tensors("inside") for record in records]
    for rank in range(1, case.ranks_with_data):
        same = all(identical(inside[0][name], g) for name, g in inside[rank].items())
        differ = any(not identical(expected[0][name], g) for name, g in expected[rank].items())
        if same and differ:
            raise AssertionError(
                f"ranks 0 and {rank} hold the same .grad inside no_sync() although their own accumulated "
                f"gradients differ: gradients were synchronised before the window ended; case: {case}"
            )
    for record, rank_expected in zip(records, expected):
        assert_grads_close(
            inside[record.rank],
            rank_expected,
            tolerance=local_tolerances(case, record.rank, case.k - 1),
            context=f"{case}; rank {record.rank}'s .grad after {case.k - 1} backward call(s) inside no_sync(), "
            "expected its own accumulated gradient (no averaging over ranks yet)",
        )


def check_step_matches_full_batch_step(pool: RankPool, case: DistributedCase) -> None:
    """After optimizer.step() every rank holds the same θ (bitwise), and it is θ − lr·∇L of one process."""
    __tracebackhide__ = True
    records = pool.run(case)[: case.ranks_with_data]
    expected, tolerance = full_batch_step(case), step_tolerances(case)
    reference = records[0].tensors("params")
    for record in records[1:]:
        for name, value in record.tensors("params").items():
            assert_tensor_close(
                value,
                reference[name],
                name=f"parameter {name!r} on rank {record.rank} vs rank 0",
                tolerance=EXACT,
                context=f"{case}; after the window's SGD step, ranks must hold identical parameters",
            )
    assert_grads_close(
        reference,
        expected,
        tolerance=tolerance,
        what="parameter after the step",
        context=f"{case}; rank 0 after the window's SGD step, expected θ − lr·∇L of the single-process full batch",
    )
