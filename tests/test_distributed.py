"""Accumulation under DistributedDataParallel on real gloo process groups (2 and 3 ranks, CPU).

Every example runs on rank processes started once per session; deadline=None because each
example's time is bounded by the pool's own timeout, which turns a hang into a failure.
"""

import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from properties.case import Case
from properties.distributed import invariants, unavailable_reason
from properties.distributed.cases import DistributedCase
from properties.distributed.pool import RankFailure, RankPool
from properties.distributed.window import Fault
from properties.models import ModelSpec

pytestmark = [
    pytest.mark.distributed,
    pytest.mark.xdist_group("distributed"),
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
]
WORLD_SIZES = pytest.mark.parametrize("world_size", invariants.WORLD_SIZES, ids=lambda w: f"{w}-ranks")


@WORLD_SIZES
@settings(deadline=None)
@given(data=st.data())
def test_k_micro_batches_per_rank_under_no_sync_give_every_rank_the_full_batch_gradient(rank_pool, world_size, data):
    invariants.check_window_gives_full_batch_gradient(rank_pool, data.draw(invariants.window_cases(world_size), label="case"))


@WORLD_SIZES
@settings(deadline=None)
@given(data=st.data())
def test_a_window_all_reduces_each_gradient_once_and_nothing_inside_no_sync(rank_pool, world_size, data):
    invariants.check_one_allreduce_per_window(rank_pool, data.draw(invariants.window_cases(world_size, min_k=2), label="case"))


@WORLD_SIZES
@settings(deadline=None)
@given(data=st.data())
def test_inside_no_sync_each_rank_holds_only_its_own_accumulated_gradient(rank_pool, world_size, data):
    invariants.check_gradients_stay_local_inside_no_sync(
        rank_pool, data.draw(invariants.window_cases(world_size, min_k=2), label="case")
    )


@WORLD_SIZES
@settings(deadline=None)
@given(data=st.data())
def test_the_step_after_a_window_leaves_every_rank_with_the_full_batch_step(rank_pool, world_size, data):
    invariants.check_step_matches_full_batch_step(rank_pool, data.draw(invariants.window_cases(world_size), label="case"))


FAULT_TIMEOUT_S = 60.0
"""Long enough that a loaded machine never reaches it on a healthy example: a dead rank must be seen well before it."""
HANG_TIMEOUT_S = 1.5


def assert_no_process_left(pids):
    """Every pid is gone: terminated and reaped, not a zombie, not still running."""
    left = []
    for pid in pids:
        try:
            os.kill(pid, 0)
            left.append(pid)
        except ProcessLookupError:
            continue
    assert not left, f"rank processes {left} are still alive after the pool shut down"


@pytest.fixture
def fault_pool():
    """Two ranks with a short timeout, apart from the session's pool so that a fault cannot disturb it."""
    pool = RankPool(world_size=2, timeout=FAULT_TIMEOUT_S)
    try:
        yield pool.start()
    finally:
        pids = pool.pids()
        pool.close()
        assert_no_process_left(pids)


FAULT_CASE = DistributedCase(Case(ModelSpec("linear", 2, 1), (1, 2, 3, 1)), world_size=2)


def test_a_rank_that_exits_mid_example_fails_it_at_once_and_leaves_no_process(fault_pool):
    pids, started = fault_pool.pids(), time.monotonic()
    with pytest.raises(RankFailure, match=r"rank 1 exited with code 3") as failure:
        fault_pool.run(FAULT_CASE, fault=Fault(rank=1, action="exit"))
    elapsed = time.monotonic() - started
    assert elapsed < FAULT_TIMEOUT_S, f"a dead rank was reported after {elapsed:.2f} s, not at once"
    assert "the rank pool was shut down" in str(failure.value) and str(FAULT_CASE) in str(failure.value)
    assert not fault_pool.running
    assert_no_process_left(pids)
    assert len(fault_pool.run(FAULT_CASE)) == 2, "the pool did not restart for the next example"
    assert fault_pool.starts == 2


def test_a_rank_that_hangs_before_the_all_reduce_fails_the_example_at_the_timeout_and_leaves_no_process(fault_pool):
    pids, started = fault_pool.pids(), time.monotonic()
    with pytest.raises(RankFailure, match=rf"no answer from rank\(s\) \[(0, )?1\] within {HANG_TIMEOUT_S:g} s"):
        fault_pool.run(FAULT_CASE, fault=Fault(rank=1, action="hang"), timeout=HANG_TIMEOUT_S)
    elapsed = time.monotonic() - started
    assert HANG_TIMEOUT_S <= elapsed < FAULT_TIMEOUT_S, f"a hung rank was reported after {elapsed:.2f} s"
    assert not fault_pool.running
    assert_no_process_left(pids)
