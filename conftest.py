"""Suite-wide set-up: Hypothesis profiles, the report header, seeds and reproduce lines, the shrink budget, the hermetic-state check."""

import pytest
from hypothesis import settings

from properties import seeding, shrink_budget
from properties.profiles import register_profiles
from properties.provenance import installed_version, origin

register_profiles()
THREADS_BEFORE_SESSION = []
TORCH_LINE = "properties_torch_line"
WORKER_TORCH_LINES: set = set()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """The run's seed, before Hypothesis reads it, and the suite's plugins; under pytest-xdist, one intra-op thread per worker.

    The seeding and shrink-budget plugins are registered here, not through `pytest_plugins`, which
    pytest refuses in this conftest when a run's rootdir lies elsewhere (pytest --recipe from a user's project).

    torch.testing.assert_close imports torch.distributed.tensor on its first call; calling it once
    here keeps that import out of in-process pytester runs, whose sys.modules snapshot would drop
    it and make the next import re-register torch's c10d operators (a RuntimeError).

    torch is imported only where tests run: an xdist controller never imports it, so the workers
    start sooner.
    """
    seeding.choose(config)
    for plugin in (seeding, shrink_budget):
        if not config.pluginmanager.is_registered(plugin):
            config.pluginmanager.register(plugin)
    if xdist_controller(config):
        return  # it runs no test
    import torch

    torch.testing.assert_close(torch.zeros(1), torch.zeros(1))
    if hasattr(config, "workerinput"):
        THREADS_BEFORE_SESSION.append(torch.get_num_threads())
        torch.set_num_threads(1)
        config.workeroutput[TORCH_LINE] = torch_line()


def xdist_controller(config) -> bool:
    """Whether this process is a pytest-xdist controller, which hands the tests to workers and never imports torch."""
    return bool(getattr(config.option, "numprocesses", None)) and not hasattr(config, "workerinput")


def torch_line() -> str:
    """torch's version, the devices it sees and the CPU dtypes the suite draws."""
    import torch

    from properties.strategies import supported_dtypes

    devices = "cpu" + (f", cuda ({torch.cuda.get_device_name()})" if torch.cuda.is_available() else "")
    dtypes = ", ".join(str(d).replace("torch.", "") for d in supported_dtypes("cpu"))
    return f"torch {torch.__version__} on {devices}; cpu dtypes: {dtypes}"


def pytest_unconfigure(config):
    """Give the worker back the thread count it started with."""
    if THREADS_BEFORE_SESSION:
        import torch

        torch.set_num_threads(THREADS_BEFORE_SESSION.pop())


def pytest_report_header(config):
    """torch version and devices, the Hypothesis profile, how the run is seeded, and where `properties` comes from."""
    if xdist_controller(config):
        line = f"torch {installed_version('torch')} (the workers' devices and dtypes: at the end of the run)"
    else:
        line = torch_line()
    seeded = config.stash[seeding.SEEDING]
    return [
        line,
        f"hypothesis profile {seeded.profile!r} (max_examples={settings.default.max_examples}); {seeded.header()}",
        origin(),
    ]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """Keep each xdist worker's torch line for the end of the run."""
    line = getattr(node, "workeroutput", {}).get(TORCH_LINE)
    if line:
        WORKER_TORCH_LINES.add(line)


def pytest_terminal_summary(terminalreporter):
    """Under pytest-xdist, the torch line the workers saw (the controller never imports torch)."""
    for line in sorted(WORKER_TORCH_LINES):
        terminalreporter.write_line(f"workers: {line}")


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
    from properties.hermetic import GlobalState

    before = GlobalState.capture()
    yield
    after = GlobalState.capture()
    changed = before.differences(after)
    if changed:
        before.restore()
        pytest.fail("test left torch's global state changed: " + "; ".join(changed), pytrace=False)
