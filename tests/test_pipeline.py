"""Pipeline-parallel accumulation: every torch.distributed.pipelining schedule on 2–4 gloo ranks, alone and × 2 data-parallel
replicas (DDP or FSDP2 on each stage), vs the full batch.

The examples run on the session's four-rank pool (its world or a subgroup of ranks 0…w−1);
deadline=None because the pool's own timeout turns a hang into a failure.
"""

from types import SimpleNamespace

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from properties import defects, profiles
from properties.distributed import pipeline_dp_invariants as composed
from properties.distributed import pipeline_invariants as invariants
from properties.distributed.pipeline import PLACEMENTS, PipelineCase, exported_schedules, unavailable_reason
from properties.distributed.pool import DEFECT_TIMEOUT_S
from properties.models import ModelSpec

NO_SPLIT_BACKWARD = (
    "not __import__('properties.distributed.pipeline_invariants', fromlist=['_']).drawable_split_backward_schedules()"
)
"""A skipif condition evaluated at set-up: no split-backward schedule is drawable on this torch."""

pytestmark = [
    pytest.mark.distributed,
    pytest.mark.xdist_group("distributed"),
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
]


def test_every_exported_schedule_is_placed():
    unknown = sorted(set(exported_schedules()) - set(PLACEMENTS))
    assert not unknown, (
        f"torch.distributed.pipelining exports schedule(s) {unknown} that the suite does not know how to place: "
        "add each to properties/distributed/pipeline.PLACEMENTS so that it is drawn"
    )


def test_every_exported_schedule_is_drawn():
    seen = set()

    @settings(max_examples=300, database=None, derandomize=True, deadline=None, phases=[Phase.generate])
    @given(case=invariants.ANY_PIPELINES)
    def drawn(case):
        seen.add(case.schedule)

    drawn()
    left_to_xfail = {name for name in exported_schedules() if defects.registered(SimpleNamespace(schedule=name))}
    expected = set(exported_schedules()) - left_to_xfail
    assert seen == expected, f"drawn {sorted(seen)}, exported {sorted(exported_schedules())}, left to xfail {left_to_xfail}"


@settings(deadline=None, max_examples=profiles.examples(0.4))
@given(case=invariants.ANY_PIPELINES)
def test_one_step_gives_every_stage_the_full_batch_gradient(pipeline_pool, case):
    invariants.check_every_stage_holds_the_full_batch_gradient(pipeline_pool, case)


@pytest.mark.skipif(
    NO_SPLIT_BACKWARD,
    reason="every split-backward schedule this torch exports is left to a registered defect's xfail",
)
@settings(deadline=None, max_examples=profiles.examples(0.2))
@given(case=invariants.SPLIT_BACKWARD_PIPELINES)
def test_the_split_backward_of_zero_bubble_schedules_accumulates_what_the_fused_backward_does(pipeline_pool, case):
    invariants.check_split_backward_matches_fused(pipeline_pool, case)


@settings(deadline=None, max_examples=profiles.examples(0.2))
@given(case=invariants.ANY_PIPELINES)
def test_the_losses_a_step_returns_are_the_micro_batch_losses(pipeline_pool, case):
    invariants.check_returned_losses_are_the_micro_batch_losses(pipeline_pool, case)


@settings(deadline=None, max_examples=profiles.examples(0.3))
@given(case=invariants.OUTER_PIPELINES)
def test_outer_steps_accumulated_the_right_way_give_the_full_batch_gradient_over_all_rows(pipeline_pool, case):
    invariants.check_every_stage_holds_the_full_batch_gradient(pipeline_pool, case)


@settings(deadline=None, max_examples=profiles.examples(0.3))
@given(case=st.one_of(invariants.ANY_PIPELINES, invariants.OUTER_PIPELINES))
def test_the_optimizer_step_leaves_every_stage_with_the_full_batch_step(pipeline_pool, case):
    invariants.check_step_gives_full_batch_step(pipeline_pool, case)


@defects.PIPELINE_SCALE_GRADS_ACROSS_STEPS.xfail()
@settings(deadline=None, max_examples=2, phases=[Phase.generate])  # where registered any example shows it
@given(case=invariants.default_scale_grads_outer_cases())
def test_outer_steps_with_the_default_scale_grads_give_the_sum_of_the_full_batch_gradients(pipeline_pool, case):
    invariants.check_every_stage_holds_the_full_batch_gradient(pipeline_pool, case)


@settings(deadline=None, max_examples=profiles.examples(0.15))
@given(case=composed.DDP_COMPOSED)
def test_pipeline_x_ddp_gives_every_replica_the_full_batch_gradient_over_all_replicas_rows(pipeline_pool, case):
    composed.check_every_replica_holds_the_full_batch_gradient(pipeline_pool, case)


@settings(deadline=None, max_examples=profiles.examples(0.15))
@given(case=st.one_of(composed.FSDP2_COMPOSED, composed.OUTER_COMPOSED))
def test_pipeline_x_fsdp2_gives_every_replica_the_full_batch_gradient_over_all_replicas_rows(pipeline_pool, case):
    composed.check_every_replica_holds_the_full_batch_gradient(pipeline_pool, case)


@defects.PIPELINE_DDP_SPLIT_BACKWARD.xfail()
@settings(deadline=None, max_examples=2, phases=[Phase.generate])  # where registered any example shows it
@given(case=composed.ddp_split_backward_cases())
def test_ddp_stages_under_a_zero_bubble_schedule_give_every_replica_the_full_batch_gradient(pipeline_pool, case):
    composed.check_every_replica_holds_the_full_batch_gradient(pipeline_pool, case)


@defects.PIPELINE_V_SCHEDULE_SELF_SEND.xfail()
@settings(deadline=None, max_examples=2, phases=[Phase.generate])  # where registered any example shows it
@given(case=invariants.v_schedule_cases())
def test_a_v_schedule_with_two_adjacent_stages_on_its_last_rank_gives_every_stage_the_full_batch_gradient(pipeline_pool, case):
    blocks = defects.PIPELINE_V_SCHEDULE_SELF_SEND.affects()  # the other ranks block: fail it sooner than 30 s
    with pipeline_pool.answering_within(DEFECT_TIMEOUT_S if blocks else None):
        invariants.check_every_stage_holds_the_full_batch_gradient(pipeline_pool, case)


def test_a_batch_that_n_microbatches_does_not_divide_is_refused_naming_n_and_n():
    with pytest.raises(InvalidArgument, match=r"N=7 rows .* n_microbatches=4"):
        PipelineCase(ModelSpec("mlp", 2, 1, hidden=2), "ScheduleGPipe", 2, 1, (0, 1, 2), n_microbatches=4, rows=7)
