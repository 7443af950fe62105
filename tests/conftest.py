"""Session fixtures for tests/: one rank pool per test session (per pytest-xdist worker), shut down at the end."""

import pytest

from properties.distributed import unavailable_reason


@pytest.fixture(scope="session")
def rank_pool():
    """Three gloo rank processes, started once and shared by every distributed example (world sizes 2 and 3)."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    from properties.distributed.pool import RankPool

    pool = RankPool(world_size=3)
    try:
        yield pool.start()
    finally:
        pool.close()


@pytest.fixture(scope="session")
def pipeline_pool():
    """Four gloo rank processes for the pipeline family: pipelines on 2…4 ranks and pipeline × data parallel on 2 × 2.

    The forkserver the three-rank pool warmed is shared, so starting these four costs a fork and a rendezvous.
    """
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    from properties.distributed.pool import RankPool

    pool = RankPool(world_size=4)
    try:
        yield pool.start()
    finally:
        pool.close()
