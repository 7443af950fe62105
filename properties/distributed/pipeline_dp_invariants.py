"""Pipeline × data parallel is accumulation too: each replica's stages hold ∇(1/(c·D))·Σ over all T·D·N rows of ‖ŷ − y‖².

c is the pipeline's count (pipeline_invariants), D the replicas: DDP's all-reduce and FSDP2's
reduce-scatter average the replicas' accumulated gradients. The expected value is one process's
gradient of the unsplit model over every replica's rows; each replica is compared on its own.
"""

from __future__ import annotations

from hypothesis import strategies as st

from properties import bounds, defects
from properties.compare import Tolerance, assert_grads_close
from properties.distributed import pipeline_invariants as P
from properties.distributed.pipeline import PipelineRecord
from properties.distributed.pipeline_dp import WRAPPERS, ComposedCase
from properties.distributed.pool import RankPool

PIPELINE_RANKS = 2
REPLICAS = 2


@st.composite
def composed_cases(draw, *, wrappers=WRAPPERS, steps=st.just(1), scale_grads_across_steps: bool = False) -> ComposedCase:
    """A drawn pipeline on 2 pipeline ranks (any schedule, loop or V, 1 or 2 stages per rank) × 2 replicas, DDP or FSDP2."""
    pipeline = draw(
        P.pipeline_cases(world_size=st.just(PIPELINE_RANKS), steps=steps, scale_grads_across_steps=scale_grads_across_steps)
    )
    return ComposedCase(pipeline, REPLICAS, draw(st.sampled_from(wrappers)))


def sound_composed_cases(**kwargs):
    """composed_cases(**kwargs) but a configuration a registered deviation hits, which is left to its strict xfail."""
    return composed_cases(**kwargs).filter(lambda case: not defects.registered(case))


def ddp_split_backward_cases():
    """The zero-bubble deviation's configuration: DDP stages under a split-backward schedule, one step(); tanh with biases,
    so that the two replicas' gradients differ (dead ReLU units could make both zero, their average equal to each)."""
    split = st.deferred(lambda: st.sampled_from(P.split_backward_schedules()))
    pipelines = P.pipeline_cases(schedule=split, world_size=st.just(PIPELINE_RANKS), activations=("tanh",), bias=True)
    composed = st.builds(ComposedCase, pipelines, st.just(REPLICAS), st.just("DDP"))
    return composed.filter(lambda case: not defects.PIPELINE_V_SCHEDULE_SELF_SEND.hit(case))


ANY_COMPOSED = sound_composed_cases()
DDP_COMPOSED = sound_composed_cases(wrappers=("DDP",))
FSDP2_COMPOSED = sound_composed_cases(wrappers=("FSDP2",))
OUTER_COMPOSED = sound_composed_cases(wrappers=("FSDP2",), steps=st.integers(2, 4))
"""Outer accumulation under FSDP2 only: with DDP stages a second step() raises on 2.13.0 (docs/distributed.md)."""


def replica(records: list[PipelineRecord], case: ComposedCase, d: int) -> list[PipelineRecord]:
    """The records of replica d's pipeline ranks."""
    return [record for record in records if case.coordinates(record.rank)[1] == d]


def gradient_tolerances(case: ComposedCase) -> dict[str, Tolerance]:
    """The pipeline's bound over all T·D·N rows (`pipeline_invariants.gradient_tolerances`), plus the replicas' reduction.

    DDP divides by D and all-reduces D terms; FSDP2 divides by 2 before its reduce-scatter and by D/2
    after it: at most D + 2 roundings, as for DDP's own windows (properties.distributed.invariants).
    The replicas' gradients are summed on the same magnitudes M the bound already counts over all rows.
    """
    model = case.data().build_model()
    x, y = case.data().full_batch()
    bound = bounds.mse_gradient_bound(case.model, model, x, y, count=case.count, dtype=case.dtype)
    return bound.tolerances(bounds.accumulation_roundings(case.n_microbatches * case.steps) + 2 + case.replicas + 2)


def check_every_replica_holds_the_full_batch_gradient(pool: RankPool, case: ComposedCase) -> None:
    """After T step() calls every replica's stages hold ∇(1/(c·D))·Σ over all T·D·N rows, one process's unsplit gradient."""
    __tracebackhide__ = True
    records = pool.run(case)
    expected = P.full_batch_gradient(case)
    tolerance = gradient_tolerances(case)
    for d in range(case.replicas):
        assert_grads_close(
            P.merged(replica(records, case, d), "grads"),
            expected,
            tolerance=tolerance,
            context=f"{case}; replica {d}'s stages' .grad after {case.steps} step() call(s), expected the one-process "
            f"gradient of (1/{case.count:g})·Σ‖ŷ − y‖² over all {case.rows * case.steps * case.replicas} rows of the "
            f"{case.replicas} replicas (a replica's own rows only: ≈ the average is missing, the {case.wrapper} "
            "reduction did not run)",
        )
