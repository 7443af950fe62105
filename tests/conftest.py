"""Session fixtures for tests/ (one rank pool per pytest-xdist worker) and the opt-in markers a plain run skips."""

import re

import pytest

from properties import profiles
from properties.distributed import unavailable_reason

OPT_IN = {
    "torchrun": ("starts torchrun (seconds per test)", ("torchrun", "distributed")),
    "commands": ("runs the suite's own commands in subprocesses, as a user runs them (seconds per test)", ("commands",)),
    "deepspeed": (
        "starts DeepSpeed's rank processes (an interpreter importing DeepSpeed per rank: seconds)",
        ("deepspeed", "frameworks"),
    ),
}
"""Markers whose tests run only when a -m expression names them (or a marker listed beside them), or under the
thorough profile; `.ci/run` selects them after the plain run."""


def selected(config, names: tuple) -> bool:
    """Whether the -m expression names one of `names` (not negated), or the thorough profile is loaded."""
    markexpr = config.getoption("markexpr", default="") or ""
    named = re.search(r"\b(" + "|".join(names) + r")\b", markexpr)
    return profiles.thorough() or bool(named and "not " not in markexpr)


def pytest_runtest_setup(item):
    """Skip an opt-in marker's test, with the reason and the command that runs it, unless the run selected it."""
    for marker, (what, names) in OPT_IN.items():
        if item.get_closest_marker(marker) and not selected(item.config, names):
            pytest.skip(f"{what}: run with {' or '.join(f'-m {name}' for name in names)} or HYPOTHESIS_PROFILE=thorough")


def started_pool(world_size: int):
    """A gloo rank pool of `world_size` processes for the session (skipped with the reason where gloo cannot run)."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    from properties.distributed.pool import RankPool

    pool = RankPool(world_size=world_size)
    try:
        yield pool.start()
    finally:
        pool.close()


@pytest.fixture(scope="session")
def rank_pool():
    """Three gloo rank processes, started once and shared by every distributed example (world sizes 2 and 3)."""
    yield from started_pool(3)


@pytest.fixture(scope="session")
def pipeline_pool():
    """Four gloo rank processes for the pipeline family: pipelines on 2…4 ranks and pipeline × data parallel on 2 × 2.

    The forkserver the three-rank pool warmed is shared, so starting these four costs a fork and a rendezvous.
    """
    yield from started_pool(4)
