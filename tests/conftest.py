"""Session fixtures for tests/: one rank pool per test session (per pytest-xdist worker), shut down at the end; DeepSpeed's
tests only when selected."""

import re

import pytest

from properties import profiles
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


def deepspeed_selected(config) -> bool:
    """Whether the run asked for DeepSpeed's tests: a -m expression naming deepspeed or frameworks, or the thorough profile."""
    markexpr = config.getoption("markexpr", default="") or ""
    return profiles.thorough() or bool(re.search(r"\b(deepspeed|frameworks)\b", markexpr) and "not " not in markexpr)


@pytest.fixture(autouse=True)
def deepspeed_only_when_selected(request):
    """Skip, with the reason, a test marked deepspeed in a plain `pytest -n auto`: its first example starts DeepSpeed's rank
    processes (an interpreter importing DeepSpeed per rank: 5–20 s on 2 busy cores)."""
    if request.node.get_closest_marker("deepspeed") is not None and not deepspeed_selected(request.config):
        pytest.skip(
            "starts DeepSpeed's rank processes (seconds): run with -m deepspeed, -m frameworks or HYPOTHESIS_PROFILE=thorough"
        )
