"""Suite-wide set-up: Hypothesis profiles, the report header, a reproduce line, and the hermetic-state check."""

import pytest
import torch
from hypothesis import settings

from properties.hermetic import GlobalState
from properties.profiles import register_profiles
from properties.strategies import supported_dtypes

register_profiles()
THREADS_BEFORE_SESSION = []


def pytest_configure(config):
    """Under pytest-xdist, one intra-op thread per worker: the workers already fill the cores.

    torch.testing.assert_close imports torch.distributed.tensor on its first call; calling it once
    here keeps that import out of in-process pytester runs, whose sys.modules snapshot would drop
    it and make the next import re-register torch's c10d operators (a RuntimeError).
    """
    if not getattr(config.option, "numprocesses", None) or hasattr(config, "workerinput"):  # not on an xdist controller
        torch.testing.assert_close(torch.zeros(1), torch.zeros(1))
    if hasattr(config, "workerinput"):
        THREADS_BEFORE_SESSION.append(torch.get_num_threads())
        torch.set_num_threads(1)


def pytest_unconfigure(config):
    """Give the worker back the thread count it started with."""
    if THREADS_BEFORE_SESSION:
        torch.set_num_threads(THREADS_BEFORE_SESSION.pop())


def seed_line(config) -> str:
    """How this run's examples are seeded, and how to replay them."""
    seed = config.getoption("hypothesis_seed", default=None)
    if seed is not None:
        return f"seed {seed} (--hypothesis-seed)"
    if settings.default.derandomize:
        return "seed derandomized: each test's seed is derived from its name, every run draws the same examples"
    return "seed random per test: a failure prints its seed and a reproduce line (--hypothesis-seed=N)"


def pytest_report_header(config):
    """torch version and devices, the Hypothesis profile and how the run is seeded."""
    devices = "cpu" + (f", cuda ({torch.cuda.get_device_name()})" if torch.cuda.is_available() else "")
    dtypes = ", ".join(str(d).replace("torch.", "") for d in supported_dtypes("cpu"))
    return [
        f"torch {torch.__version__} on {devices}; cpu dtypes: {dtypes}",
        f"hypothesis profile {settings.get_current_profile_name()!r} "
        f"(max_examples={settings.default.max_examples}); {seed_line(config)}",
    ]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, add the command that re-runs exactly this test with this profile and seed (recipe checks print their own)."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when == "call" and not item.config.getoption("recipe", default=None):
        seed = item.config.getoption("hypothesis_seed", default=None)
        command = f"pytest '{item.nodeid}' --hypothesis-profile={settings.get_current_profile_name()}"
        command += f" --hypothesis-seed={seed}" if seed is not None else ""
        report.sections.append(("reproduce", command + "\n(or the @seed / @reproduce_failure line above)"))


SLOW_FIRST = (
    "tests/test_recipe_plugin.py",
    "tests/test_compiled.py",
    "tests/meta/test_distributed_controls.py",
    "tests/meta/test_reach_controls.py",
    "tests/meta/test_framework_controls.py",
    "tests/test_frameworks.py",
    "tests/test_distributed",
    "tests/test_fsdp.py",
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
