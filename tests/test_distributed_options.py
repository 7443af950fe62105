"""DDP accumulation under drawn options: static_graph, gradient_as_bucket_view, small buckets, find_unused_parameters, broadcast_buffers, join().

A drawn configuration that hits a registered torch defect (properties/defects.py) is left out of
the drawn properties and runs in that defect's own test, a strict xfail, so a fix shows as XPASS.
"""

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from properties import defects
from properties.distributed import invariants, unavailable_reason

pytestmark = [
    pytest.mark.distributed,
    pytest.mark.xdist_group("distributed"),
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
]
DEFECT_TIMEOUT_S = 5.0


@settings(deadline=None)
@given(case=invariants.ANY_OPTIONS)
def test_under_drawn_ddp_options_every_rank_with_data_ends_the_window_with_the_full_batch_gradient(rank_pool, case):
    invariants.check_window_gives_full_batch_gradient(rank_pool, case)


@settings(deadline=None)
@given(case=invariants.SPLIT_OPTIONS)
def test_under_drawn_ddp_options_each_bucket_is_all_reduced_once_per_window_and_nothing_inside_no_sync(rank_pool, case):
    invariants.check_one_allreduce_per_window(rank_pool, case)


@settings(deadline=None)
@given(case=invariants.SPLIT_OPTIONS)
def test_under_drawn_ddp_options_each_rank_holds_only_its_own_gradient_inside_no_sync(rank_pool, case):
    invariants.check_gradients_stay_local_inside_no_sync(rank_pool, case)


@settings(deadline=None)
@given(case=invariants.ANY_OPTIONS)
def test_under_drawn_ddp_options_the_step_leaves_every_rank_with_data_with_the_full_batch_step(rank_pool, case):
    invariants.check_step_matches_full_batch_step(rank_pool, case)


def check_a_window_the_defect_applies_to(rank_pool, data, defect, cases) -> None:
    """Draw a window that `defect` applies to; it must still give every rank the full-batch gradient."""
    case = data.draw(cases, label="case")
    assert defect.applies(case), case
    invariants.check_window_gives_full_batch_gradient(rank_pool, case)


@defects.DDP_STATIC_GRAPH_FIRST_NO_SYNC.xfail()
@settings(deadline=None, max_examples=2, phases=[Phase.generate])  # a registered defect: any example shows it
@given(data=st.data())
def test_a_static_graph_ddp_whose_first_iteration_accumulates_under_no_sync_gives_the_full_batch_gradient(rank_pool, data):
    check_a_window_the_defect_applies_to(
        rank_pool, data, defects.DDP_STATIC_GRAPH_FIRST_NO_SYNC, invariants.static_graph_first_no_sync_cases()
    )


@defects.DDP_STATIC_GRAPH_NO_SYNC_AFTER_FIRST_ITERATION.xfail()
@settings(deadline=None, max_examples=2, phases=[Phase.generate])  # where registered any example shows it
@given(data=st.data())
def test_a_static_graph_ddp_that_accumulates_under_no_sync_after_a_synced_iteration_gives_the_full_batch_gradient(
    rank_pool, data
):
    check_a_window_the_defect_applies_to(
        rank_pool,
        data,
        defects.DDP_STATIC_GRAPH_NO_SYNC_AFTER_FIRST_ITERATION,
        invariants.static_graph_no_sync_after_warmup_cases(),
    )


@defects.DDP_FIND_UNUSED_NO_SYNC.xfail()
@settings(deadline=None, max_examples=2, phases=[Phase.generate])  # where registered any example shows it
@given(data=st.data())
def test_a_parameter_used_only_inside_no_sync_is_still_all_reduced_with_find_unused_parameters(rank_pool, data):
    check_a_window_the_defect_applies_to(
        rank_pool, data, defects.DDP_FIND_UNUSED_NO_SYNC, invariants.used_only_inside_no_sync_cases()
    )


@defects.DDP_STATIC_GRAPH_JOIN_MISMATCH.xfail()
@settings(deadline=None, max_examples=2, phases=[Phase.generate])  # a registered defect: any example shows it
@given(data=st.data())
def test_a_static_graph_ddp_under_join_with_a_rank_out_of_inputs_gives_the_full_batch_gradient(rank_pool, monkeypatch, data):
    monkeypatch.setattr(rank_pool, "timeout", DEFECT_TIMEOUT_S)  # the defect may hang: fail it sooner than 30 s
    case = data.draw(invariants.static_graph_join_cases(), label="case")
    assert defects.DDP_STATIC_GRAPH_JOIN_MISMATCH.applies(case), case
    invariants.check_window_gives_full_batch_gradient(rank_pool, case)


@pytest.mark.parametrize("gradient_as_bucket_view", [False, True], ids=["copied", "bucket-view"])
def test_small_buckets_split_the_model_into_several_buckets_each_all_reduced_once_per_window(rank_pool, gradient_as_bucket_view):
    """The output layer's weight (the first gradient ready) alone fills DDP's first bucket: older torch caps that one
    at dist._DEFAULT_FIRST_BUCKET_BYTES (1 MiB) whatever bucket_cap_mb says, so a model under 1 MiB stays in one
    bucket there (measured: 2.0.1 and 2.1.2; 2.13.0 caps it at bucket_cap_mb); bucket_cap_mb gives each later
    parameter its own bucket on every version."""
    import torch

    from properties.case import Case
    from properties.distributed.cases import DistributedCase
    from properties.distributed.options import SMALL_BUCKET_CAP_MB, DDPOptions
    from properties.models import ModelSpec

    options = DDPOptions(bucket_cap_mb=SMALL_BUCKET_CAP_MB, gradient_as_bucket_view=gradient_as_bucket_view, warmup=True)
    output_weight = 2**20 // torch.zeros((), dtype=torch.float64).element_size()  # 1 MiB of float64: hidden × out
    case = DistributedCase(
        Case(ModelSpec("mlp", 3, output_weight // 512, hidden=512), (2, 1, 1, 3), torch.float64, seed=7), 2, options=options
    )
    invariants.check_one_allreduce_per_window(rank_pool, case)
    invariants.check_window_gives_full_batch_gradient(rank_pool, case)
    buckets = [len(record.syncs[-1]) for record in rank_pool.run(case, loop="global-mean")]
    assert min(buckets) >= 2, f"buckets per rank {buckets}: the small cap did not split the model"
