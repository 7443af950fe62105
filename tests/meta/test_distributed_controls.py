"""Negative controls: each DDP, FSDP2 and pipelining property rejects one broken, inside the rank processes, in the way it guards against."""

import re

import pytest

from properties import defects
from properties.distributed import fsdp_invariants, invariants, pipeline_dp_invariants, pipeline_invariants, unavailable_reason
from properties.distributed.fsdp import unavailable_reason as fsdp_unavailable_reason
from properties.distributed.pipeline import unavailable_reason as pipeline_unavailable_reason
from properties.meta import assert_rejects
from properties.mutants import distributed as distributed_mutants

NO_SPLIT_BACKWARD = (
    "not __import__('properties.distributed.pipeline_invariants', fromlist=['_']).drawable_split_backward_schedules()"
)
"""A skipif condition evaluated at set-up: no split-backward schedule is drawable on this torch."""

pytestmark = [
    pytest.mark.meta,
    pytest.mark.distributed,
    pytest.mark.xdist_group("distributed"),
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
]


def test_a_mutant_applied_here_is_forwarded_to_the_ranks_by_name(monkeypatch):
    assert distributed_mutants.active() == ()
    distributed_mutants.NO_SYNC_DOES_NOTHING.apply(monkeypatch)
    distributed_mutants.ALLREDUCE_SUMS.apply(monkeypatch)
    assert distributed_mutants.active() == ("ddp-allreduce-sums", "ddp-no-sync-does-nothing")


@pytest.mark.parametrize(
    "mutant", [distributed_mutants.NO_SYNC_DOES_NOTHING, distributed_mutants.NO_SYNC_NEVER_RESTORES], ids=lambda m: m.name
)
def test_the_allreduce_count_rejects_a_no_sync_that_syncs_early_or_never(rank_pool, monkeypatch, mutant):
    mutant.apply(monkeypatch)
    _, message = assert_rejects(
        lambda case: invariants.check_one_allreduce_per_window(rank_pool, case), case=invariants.SPLIT_WINDOWS
    )
    expected = (
        "ran inside no_sync() yet all-reduced"
        if mutant is distributed_mutants.NO_SYNC_DOES_NOTHING
        else "all-reduced 0 bucket(s)"
    )
    assert expected in message, message


def test_the_allreduce_count_rejects_a_forward_outside_no_sync(rank_pool):
    _, message = assert_rejects(
        lambda case: invariants.check_one_allreduce_per_window(rank_pool, case, loop="forward-outside-no-sync"),
        case=invariants.SPLIT_WINDOWS,
    )
    assert "ran inside no_sync() yet all-reduced 1 bucket(s)" in message, message


def test_the_local_gradient_property_rejects_a_no_sync_that_does_nothing(rank_pool, monkeypatch):
    distributed_mutants.NO_SYNC_DOES_NOTHING.apply(monkeypatch)
    _, message = assert_rejects(
        lambda case: invariants.check_gradients_stay_local_inside_no_sync(rank_pool, case), case=invariants.SPLIT_WINDOWS
    )
    assert "synchronised before the window ended" in message, message


@pytest.mark.parametrize(
    "mutant", [distributed_mutants.ALLREDUCE_SUMS, distributed_mutants.NO_SYNC_NEVER_RESTORES], ids=lambda m: m.name
)
def test_the_full_batch_property_rejects_an_allreduce_that_sums_or_never_happens(rank_pool, monkeypatch, mutant):
    mutant.apply(monkeypatch)
    example, message = assert_rejects(
        lambda case: invariants.check_window_gives_full_batch_gradient(rank_pool, case), case=invariants.ANY_WINDOWS
    )
    if mutant is distributed_mutants.ALLREDUCE_SUMS:
        assert f"actual ≈ {example['case'].world_size} × expected" in message, message


def test_the_full_batch_property_rejects_dividing_each_micro_batch_loss_by_k(rank_pool):
    example, message = assert_rejects(
        lambda case: invariants.check_window_gives_full_batch_gradient(rank_pool, case, loop="loss-over-k"),
        case=invariants.ANY_WINDOWS,
    )
    assert len(set(example["case"].case.sizes)) > 1, f"equal micro-batch sizes cannot expose 1/k: {example}"
    assert "divided by k" in message


@pytest.mark.parametrize(
    "mutant", [distributed_mutants.ALLREDUCE_SUMS, distributed_mutants.NO_SYNC_NEVER_RESTORES], ids=lambda m: m.name
)
def test_the_step_property_rejects_an_allreduce_that_sums_or_never_happens(rank_pool, monkeypatch, mutant):
    mutant.apply(monkeypatch)
    _, message = assert_rejects(
        lambda case: invariants.check_step_matches_full_batch_step(rank_pool, case), case=invariants.ANY_WINDOWS
    )
    expected = "vs rank 0" if mutant is distributed_mutants.NO_SYNC_NEVER_RESTORES else "expected θ − lr·∇L"
    assert expected in message, message


def test_the_allreduce_count_under_drawn_options_rejects_a_ddp_that_skips_a_bucket(rank_pool, monkeypatch):
    distributed_mutants.SKIPS_A_BUCKET.apply(monkeypatch)
    _, message = assert_rejects(
        lambda case: invariants.check_one_allreduce_per_window(rank_pool, case), case=invariants.SPLIT_OPTIONS
    )
    assert "expected one all-reduce per bucket" in message, message


def test_the_full_batch_property_under_drawn_options_rejects_a_ddp_that_skips_a_bucket(rank_pool, monkeypatch):
    distributed_mutants.SKIPS_A_BUCKET.apply(monkeypatch)
    _, message = assert_rejects(
        lambda case: invariants.check_window_gives_full_batch_gradient(rank_pool, case), case=invariants.ANY_OPTIONS
    )
    assert "rank" in message and ".grad after the window" in message, message


def test_the_step_property_under_drawn_options_rejects_a_ddp_that_skips_a_bucket(rank_pool, monkeypatch):
    distributed_mutants.SKIPS_A_BUCKET.apply(monkeypatch)
    assert_rejects(lambda case: invariants.check_step_matches_full_batch_step(rank_pool, case), case=invariants.ANY_OPTIONS)


@pytest.mark.parametrize(
    "mutant", [distributed_mutants.NO_SYNC_DOES_NOTHING, distributed_mutants.ALLREDUCE_SUMS], ids=lambda m: m.name
)
def test_the_drawn_options_properties_reject_a_no_sync_that_syncs_or_an_allreduce_that_sums(rank_pool, monkeypatch, mutant):
    mutant.apply(monkeypatch)
    check = (
        invariants.check_gradients_stay_local_inside_no_sync
        if mutant is distributed_mutants.NO_SYNC_DOES_NOTHING
        else invariants.check_window_gives_full_batch_gradient
    )
    assert_rejects(lambda case: check(rank_pool, case), case=invariants.SPLIT_OPTIONS)


def test_the_drawn_options_leave_every_registered_defect_to_its_strict_xfail():
    from hypothesis import given, settings

    @settings(max_examples=200, database=None, deadline=None)
    @given(case=invariants.ANY_OPTIONS)
    def drawn(case):
        assert not defects.registered(case), case

    drawn()


fsdp = pytest.mark.skipif(fsdp_unavailable_reason() is not None, reason=str(fsdp_unavailable_reason()))


@fsdp
def test_an_fsdp2_mutant_applied_here_is_forwarded_to_the_ranks_by_name(monkeypatch):
    distributed_mutants.FSDP_SYNC_FLAG_IGNORED.apply(monkeypatch)
    distributed_mutants.FSDP_REDUCE_SCATTER_SUMS.apply(monkeypatch)
    assert distributed_mutants.active() == ("fsdp-reduce-scatter-sums", "fsdp-sync-flag-ignored")


@fsdp
@pytest.mark.parametrize(
    "mutant", [distributed_mutants.FSDP_SYNC_FLAG_IGNORED, distributed_mutants.FSDP_NEVER_REDUCE_SCATTERS], ids=lambda m: m.name
)
def test_the_reduce_scatter_count_rejects_an_fsdp2_that_syncs_inside_the_window_or_never(rank_pool, monkeypatch, mutant):
    mutant.apply(monkeypatch)
    _, message = assert_rejects(
        lambda case: fsdp_invariants.check_one_reduce_scatter_per_unit_per_window(rank_pool, case),
        case=fsdp_invariants.SPLIT_FSDP,
    )
    expected = (
        "ran with set_requires_gradient_sync(False) yet reduced"
        if mutant is distributed_mutants.FSDP_SYNC_FLAG_IGNORED
        else "reduced 0 FSDP unit(s)"
    )
    assert expected in message, message


@fsdp
@pytest.mark.parametrize(
    "mutant", [distributed_mutants.FSDP_REDUCE_SCATTER_SUMS, distributed_mutants.FSDP_NEVER_REDUCE_SCATTERS], ids=lambda m: m.name
)
def test_the_fsdp2_full_batch_property_rejects_a_reduce_scatter_that_sums_or_never_happens(rank_pool, monkeypatch, mutant):
    mutant.apply(monkeypatch)
    example, message = assert_rejects(
        lambda case: fsdp_invariants.check_window_gives_full_batch_gradient(rank_pool, case), case=fsdp_invariants.ANY_FSDP
    )
    if mutant is distributed_mutants.FSDP_REDUCE_SCATTER_SUMS:
        assert f"actual ≈ {example['case'].world_size} × expected" in message, message
    else:
        assert "expected a tensor" in message and "got None" in message, message


@fsdp
@pytest.mark.parametrize(
    "mutant", [distributed_mutants.FSDP_REDUCE_SCATTER_SUMS, distributed_mutants.FSDP_NEVER_REDUCE_SCATTERS], ids=lambda m: m.name
)
def test_the_fsdp2_step_property_rejects_a_reduce_scatter_that_sums_or_never_happens(rank_pool, monkeypatch, mutant):
    mutant.apply(monkeypatch)
    _, message = assert_rejects(
        lambda case: fsdp_invariants.check_step_matches_full_batch_step(rank_pool, case), case=fsdp_invariants.ANY_FSDP
    )
    assert "expected θ − lr·∇L" in message, message


@fsdp
def test_the_reshard_after_forward_property_rejects_a_backward_that_gathers_only_the_own_shard(rank_pool, monkeypatch):
    distributed_mutants.FSDP_BACKWARD_GATHERS_OWN_SHARD.apply(monkeypatch)
    _, message = assert_rejects(
        lambda case: fsdp_invariants.check_reshard_after_forward_agrees(rank_pool, case), case=fsdp_invariants.RESHARDED_FSDP
    )
    assert "reshard_after_forward=True (actual) vs False (expected)" in message, message


pipeline = pytest.mark.skipif(pipeline_unavailable_reason() is not None, reason=str(pipeline_unavailable_reason()))


@pipeline
def test_a_pipelining_mutant_applied_here_is_forwarded_to_the_ranks_by_name(monkeypatch):
    distributed_mutants.PIPELINE_SCALES_TWICE.apply(monkeypatch)
    distributed_mutants.PIPELINE_LOSSES_REVERSED.apply(monkeypatch)
    assert distributed_mutants.active() == ("pipeline-losses-reversed", "pipeline-scales-twice")


@pipeline
@pytest.mark.parametrize(
    "mutant", [distributed_mutants.PIPELINE_SCALES_TWICE, distributed_mutants.PIPELINE_NEVER_SCALES], ids=lambda m: m.name
)
def test_the_pipeline_full_batch_property_rejects_a_stage_that_scales_twice_or_never(pipeline_pool, monkeypatch, mutant):
    mutant.apply(monkeypatch)
    example, message = assert_rejects(
        lambda case: pipeline_invariants.check_every_stage_holds_the_full_batch_gradient(pipeline_pool, case),
        case=pipeline_invariants.ANY_PIPELINES,
    )
    n = example["case"].n_microbatches
    assert example["case"].scale_grads and n >= 2, example
    factor = 1 / n if mutant is distributed_mutants.PIPELINE_SCALES_TWICE else n
    ratio = re.search(r"actual ≈ ([0-9.]+) × expected", message)
    assert ratio and float(ratio.group(1)) == pytest.approx(factor, rel=0.01), message


@pipeline
@pytest.mark.skipif(
    NO_SPLIT_BACKWARD,
    reason="every split-backward schedule this torch exports is left to a registered defect's xfail",
)
def test_the_pipeline_full_batch_property_rejects_a_weight_backward_that_does_nothing(pipeline_pool, monkeypatch):
    distributed_mutants.PIPELINE_DROPS_WEIGHT_BACKWARD.apply(monkeypatch)
    example, _ = assert_rejects(
        lambda case: pipeline_invariants.check_every_stage_holds_the_full_batch_gradient(pipeline_pool, case),
        case=pipeline_invariants.ANY_PIPELINES,
    )
    assert example["case"].placement.split_backward, example


@pipeline
@pytest.mark.skipif(
    NO_SPLIT_BACKWARD,
    reason="every split-backward schedule this torch exports is left to a registered defect's xfail",
)
def test_the_split_backward_property_rejects_a_weight_backward_that_does_nothing(pipeline_pool, monkeypatch):
    distributed_mutants.PIPELINE_DROPS_WEIGHT_BACKWARD.apply(monkeypatch)
    _, message = assert_rejects(
        lambda case: pipeline_invariants.check_split_backward_matches_fused(pipeline_pool, case),
        case=pipeline_invariants.SPLIT_BACKWARD_PIPELINES,
    )
    assert "split backward (actual) vs ScheduleLoopedBFS" in message, message


@pipeline
def test_the_outer_accumulation_property_rejects_a_step_that_resets_the_accumulated_grads(pipeline_pool, monkeypatch):
    distributed_mutants.PIPELINE_STEP_RESETS_GRADS.apply(monkeypatch)
    assert_rejects(
        lambda case: pipeline_invariants.check_every_stage_holds_the_full_batch_gradient(pipeline_pool, case),
        case=pipeline_invariants.outer_cases(),
    )


@pipeline
def test_the_outer_accumulation_property_rejects_the_default_scale_grads_across_steps(pipeline_pool):
    example, message = assert_rejects(
        lambda case: pipeline_invariants.check_every_stage_holds_the_full_batch_gradient(pipeline_pool, case),
        case=pipeline_invariants.default_scale_grads_outer_cases(),
    )
    assert defects.PIPELINE_SCALE_GRADS_ACROSS_STEPS.applies(example["case"]), example


@pipeline
def test_the_returned_losses_property_rejects_losses_out_of_order(pipeline_pool, monkeypatch):
    distributed_mutants.PIPELINE_LOSSES_REVERSED.apply(monkeypatch)
    example, message = assert_rejects(
        lambda case: pipeline_invariants.check_returned_losses_are_the_micro_batch_losses(pipeline_pool, case),
        case=pipeline_invariants.ANY_PIPELINES,
    )
    assert example["case"].n_microbatches >= 2 and "loss of micro-batch" in message, message


@pipeline
@pytest.mark.parametrize(
    "mutant", [distributed_mutants.PIPELINE_SCALES_TWICE, distributed_mutants.PIPELINE_NEVER_SCALES], ids=lambda m: m.name
)
def test_the_pipeline_step_property_rejects_a_stage_that_scales_twice_or_never(pipeline_pool, monkeypatch, mutant):
    mutant.apply(monkeypatch)
    example, message = assert_rejects(
        lambda case: pipeline_invariants.check_step_gives_full_batch_step(pipeline_pool, case),
        case=pipeline_invariants.ANY_PIPELINES,
    )
    assert "expected the full-batch step" in message, message


@pipeline
def test_the_outer_pipelines_leave_the_registered_deviation_to_its_strict_xfail():
    from hypothesis import given, settings

    @settings(max_examples=50, database=None, derandomize=True, deadline=None)
    @given(case=pipeline_invariants.OUTER_PIPELINES)
    def drawn(case):
        assert not defects.registered(case), case

    drawn()


@pipeline
def test_the_pipeline_x_data_parallel_property_rejects_ddp_stages_that_never_all_reduce(pipeline_pool, monkeypatch):
    distributed_mutants.PIPELINE_DDP_NEVER_SYNCS.apply(monkeypatch)
    example, message = assert_rejects(
        lambda case: pipeline_dp_invariants.check_every_replica_holds_the_full_batch_gradient(pipeline_pool, case),
        case=pipeline_dp_invariants.DDP_COMPOSED,
    )
    assert "the DDP reduction did not run" in message and "differs" in message, message


@pipeline
def test_the_pipeline_x_data_parallel_property_rejects_fsdp_stages_that_sum_the_replicas(pipeline_pool, monkeypatch):
    distributed_mutants.FSDP_REDUCE_SCATTER_SUMS.apply(monkeypatch)
    _, message = assert_rejects(
        lambda case: pipeline_dp_invariants.check_every_replica_holds_the_full_batch_gradient(pipeline_pool, case),
        case=pipeline_dp_invariants.FSDP2_COMPOSED,
    )
    ratio = re.search(r"actual ≈ ([0-9.]+) × expected", message)
    assert ratio and float(ratio.group(1)) == pytest.approx(2.0, rel=0.01), message


@pipeline
def test_the_pipeline_x_data_parallel_property_rejects_ddp_stages_under_a_zero_bubble_schedule(pipeline_pool):
    example, _ = assert_rejects(
        lambda case: pipeline_dp_invariants.check_every_replica_holds_the_full_batch_gradient(pipeline_pool, case),
        case=pipeline_dp_invariants.ddp_split_backward_cases(),
    )
    assert defects.PIPELINE_DDP_SPLIT_BACKWARD.applies(example["case"]), example


@pipeline
def test_the_pipeline_x_data_parallel_cases_leave_the_registered_deviation_to_its_strict_xfail():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=50, database=None, derandomize=True, deadline=None)
    @given(case=st.one_of(pipeline_dp_invariants.ANY_COMPOSED, pipeline_dp_invariants.OUTER_COMPOSED))
    def drawn(case):
        assert not defects.registered(case), case

    drawn()
