"""Suite-wide set-up: Hypothesis profiles, the report header, seeds and reproduce lines, the shrink budget, the hermetic-state check."""

import pytest
import torch
from hypothesis import settings

from properties import seeding, shrink_budget
from properties.hermetic import GlobalState
from properties.profiles import register_profiles
from properties.provenance import origin
from properties.strategies import supported_dtypes

register_profiles()
THREADS_BEFORE_SESSION = []


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """The run's seed, before Hypothesis reads it, and the suite's plugins; under pytest-xdist, one intra-op thread per worker.

    The seeding and shrink-budget plugins are registered here, not through `pytest_plugins`, which
    pytest refuses in this conftest when a run's rootdir lies elsewhere (pytest --recipe from a user's project).

    torch.testing.assert_close imports torch.distributed.tensor on its first call; calling it once
    here keeps that import out of in-process pytester runs, whose sys.modules snapshot would drop
    it and make the next import re-register torch's c10d operators (a RuntimeError).
    """
    seeding.choose(config)
    for plugin in (seeding, shrink_budget):
        if not config.pluginmanager.is_registered(plugin):
            config.pluginmanager.register(plugin)
    if not getattr(config.option, "numprocesses", None) or hasattr(config, "workerinput"):  # not on an xdist controller
        torch.testing.assert_close(torch.zeros(1), torch.zeros(1))
    if hasattr(config, "workerinput"):
        THREADS_BEFORE_SESSION.append(torch.get_num_threads())
        torch.set_num_threads(1)


def pytest_unconfigure(config):
    """Give the worker back the thread count it started with."""
    if THREADS_BEFORE_SESSION:
        torch.set_num_threads(THREADS_BEFORE_SESSION.pop())


def pytest_report_header(config):
    """torch version and devices, the Hypothesis profile, how the run is seeded, and where `properties` comes from."""
    devices = "cpu" + (f", cuda ({torch.cuda.get_device_name()})" if torch.cuda.is_available() else "")
    dtypes = ", ".join(str(d).replace("torch.", "") for d in supported_dtypes("cpu"))
    seeded = config.stash[seeding.SEEDING]
    return [
        f"torch {torch.__version__} on {devices}; cpu dtypes: {dtypes}",
        f"hypothesis profile {seeded.profile!r} (max_examples={settings.default.max_examples}); {seeded.header()}",
        origin(),
    ]


SLOW_FIRST = (
    "tests/test_real_models.py",
    "tests/test_recipe_plugin.py",
    "tests/test_compiled.py",
    "tests/meta/test_distributed_controls.py",
    "tests/meta/test_reach_controls.py",
    "tests/meta/test_framework_controls.py",
    "tests/test_frameworks.py",
    "tests/test_distributed",
    "tests/test_fsdp.py",
    "tests/test_pipeline.py",
    "tests/test_torchrun.py",
)
"""Modules whose tests take seconds each (subprocesses, compilation, rank pools, frameworks): started first, so that
pytest-xdist's workers do not finish the quick tests and then wait on one long test at the end."""


def pytest_collection_modifyitems(config, items):
    """Longest first under pytest-xdist: the slow modules' tests move to the front, in their own order."""
    if getattr(config.option, "numprocesses", None):
        items.sort(key=lambda item: not item.nodeid.startswith(SLOW_FIRST))


@pytest.fixture(autouse=True)
def hermetic_torch_state():
    """Fail any test that leaves torch's global state changed (and restore it for the next test)."""
    before = GlobalState.capture()
    yield
    after = GlobalState.capture()
    changed = before.differences(after)
    if changed:
        before.restore()
        pytest.fail("test left torch's global state changed: " + "; ".join(changed), pytrace=False)
