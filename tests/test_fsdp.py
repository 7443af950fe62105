"""Accumulation under FSDP2 (`fully_shard` per layer and on the root) on real gloo process groups (2 and 3 ranks, CPU).

The examples run on the session's rank pool (a CPU DeviceMesh over its world or its 2-rank
subgroup); deadline=None because the pool's own timeout turns a hang into a failure.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from properties import profiles
from properties.distributed import fsdp_invariants as invariants
from properties.distributed.fsdp import unavailable_reason

pytestmark = [
    pytest.mark.distributed,
    pytest.mark.xdist_group("distributed"),
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
]
WORLD_SIZES = pytest.mark.parametrize("world_size", invariants.WORLD_SIZES, ids=lambda w: f"{w}-ranks")


@WORLD_SIZES
@settings(deadline=None, max_examples=profiles.examples(0.3))
@given(data=st.data())
def test_k_micro_batches_with_sync_off_for_k_minus_1_give_every_rank_the_full_batch_gradient(rank_pool, world_size, data):
    invariants.check_window_gives_full_batch_gradient(rank_pool, data.draw(invariants.fsdp_cases(world_size), label="case"))


@WORLD_SIZES
@settings(deadline=None, max_examples=profiles.examples(0.3))
@given(data=st.data())
def test_a_window_reduce_scatters_each_fsdp_unit_once_and_nothing_while_sync_is_off(rank_pool, world_size, data):
    case = data.draw(invariants.fsdp_cases(world_size, min_k=2), label="case")
    invariants.check_one_reduce_scatter_per_unit_per_window(rank_pool, case)


@settings(deadline=None, max_examples=profiles.examples(0.3))
@given(case=invariants.ANY_FSDP)
def test_sgd_on_the_sharded_parameters_after_a_window_is_the_full_batch_step(rank_pool, case):
    invariants.check_step_matches_full_batch_step(rank_pool, case)


@settings(deadline=None, max_examples=profiles.examples(0.2))
@given(case=invariants.RESHARDED_FSDP)
def test_reshard_after_forward_on_and_off_give_the_same_gradient_and_step(rank_pool, case):
    invariants.check_reshard_after_forward_agrees(rank_pool, case)
