"""Negative controls for the hermetic check: every piece of torch's global state a test changes is named and undone."""

from pathlib import Path

import pytest
import torch
from hypothesis import settings

from properties.hermetic import GlobalState, set_deterministic_algorithms

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.meta

ROOT_CONFTEST = Path(__file__).resolve().parents[2] / "conftest.py"

# field of GlobalState → a statement (run in a test body) that changes it. The deterministic flag is
# set as torch.use_deterministic_algorithms sets it, minus that function's import of torch._inductor.
CHANGES = {
    "default_dtype": "torch.set_default_dtype({torch.float32: torch.float64}.get(torch.get_default_dtype(), torch.float32))",
    "grad_enabled": "torch.set_grad_enabled(not torch.is_grad_enabled())",
    "rng_state": "torch.randn(1)",
    "num_threads": "torch.set_num_threads(torch.get_num_threads() + 1)",
    "deterministic_algorithms": "set_deterministic_algorithms(not torch.are_deterministic_algorithms_enabled())",
    "anomaly_enabled": "torch.autograd.set_detect_anomaly(not torch.is_anomaly_enabled())",
}
RESEED = "torch.manual_seed(12345)"


@pytest.mark.parametrize("statement", [*CHANGES.values(), RESEED], ids=[*CHANGES, "rng_state-reseeded"])
def test_global_state_names_exactly_the_field_a_statement_changes_and_restore_undoes_it(statement):
    before = GlobalState.capture()
    try:
        exec(statement, {"torch": torch, "set_deterministic_algorithms": set_deterministic_algorithms})
        changed = before.differences(GlobalState.capture())
    finally:
        before.restore()
    field = next(name for name, s in CHANGES.items() if s == statement) if statement != RESEED else "rng_state"
    assert [entry.split()[0] for entry in changed] == [field], changed
    assert GlobalState.capture() == before, "restore() did not bring back the captured state"


def test_the_suite_fails_each_test_that_leaves_global_state_changed_and_passes_one_that_does_not(pytester):
    """One in-process pytest run under the suite's own conftest: one test per change, one clean test."""
    pytester.makeconftest(ROOT_CONFTEST.read_text(encoding="utf-8"))
    body = [
        "import torch",
        "from properties.hermetic import set_deterministic_algorithms",
        "",
        "def test_clean():",
        "    torch.zeros(1)",
        "",
    ]
    for field, statement in [*CHANGES.items(), ("reseeded", RESEED)]:
        body += [f"def test_changes_{field}():", f"    {statement}", ""]
    pytester.makepyfile(test_state="\n".join(body))
    profile = settings.get_current_profile_name()
    try:
        recorder = pytester.inline_run("-p", "no:cacheprovider", "--assert=plain")
    finally:
        settings.load_profile(profile)
    errors = {
        report.nodeid.split("test_changes_")[-1]: str(report.longrepr)
        for report in recorder.getreports("pytest_runtest_logreport")
        if report.when == "teardown" and report.failed
    }
    expected = {field: field for field in CHANGES} | {"reseeded": "rng_state"}
    assert set(errors) == set(expected), f"tests failed by the hermetic check: {sorted(errors)}"
    for test, field in expected.items():
        assert "test left torch's global state changed" in errors[test] and field in errors[test], errors[test]
    passed = [r.nodeid for r in recorder.getreports("pytest_runtest_logreport") if r.when == "call" and r.passed]
    assert any(nodeid.endswith("test_clean") for nodeid in passed)
