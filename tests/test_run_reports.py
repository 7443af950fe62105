"""The run's reports cannot look green by mistake: the summary JSON says whether the run completed, JUnit says what ran."""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import settings

pytest_plugins = ["pytester"]

ROOT_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

OUTCOMES = """
import pytest
from hypothesis import given, settings, strategies as st


def test_passes():
    pass


@settings(database=None, max_examples=5)
@given(n=st.integers(0, 10**9))
def test_fails(n):
    assert n < 0, f"drew {n}"


def test_skips():
    pytest.skip("no GPU here")


@pytest.mark.xfail(reason="a known deviation", strict=True)
def test_xfails():
    assert False
"""

INTERRUPTS_ITSELF = """
import os
import signal


def test_sends_itself_sigint():
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a parent that ignores SIGINT passes SIG_IGN on
    os.kill(os.getpid(), signal.SIGINT)


def test_never_runs():
    pass
"""


def run(pytester, source: str, *args: str):
    """Run one test file under the suite's conftest, in process (the outer profile is loaded again after)."""
    pytester.makeconftest(ROOT_CONFTEST.read_text(encoding="utf-8"))
    pytester.makepyfile(test_sample=source)
    profile = settings.get_current_profile_name()
    try:
        return pytester.runpytest("-p", "no:cacheprovider", "--hypothesis-profile=dev", *args)
    finally:
        settings.load_profile(profile)


@pytest.mark.parametrize(
    "workers", [pytest.param([], id="serial"), pytest.param(["-n", "2"], id="xdist", marks=pytest.mark.commands)]
)
def test_the_summary_of_a_finished_run_says_complete_and_lists_reasons_versions_and_the_commit(pytester, workers):
    path = pytester.path / "summary.json"
    run(pytester, OUTCOMES, f"--summary-json={path}", *workers).assert_outcomes(passed=1, failed=1, skipped=1, xfailed=1)
    summary = json.loads(path.read_text())
    assert summary["complete"] is True and summary["collected"] == 4 and summary["finished"] == 4
    assert summary["skip_reasons"] == {"no GPU here": ["test_sample.py::test_skips"]}
    assert summary["xfail_reasons"] == {"a known deviation": ["test_sample.py::test_xfails"]}
    assert {"python", "torch", "hypothesis", "numpy", "pytest"} <= {k for k, v in summary["versions"].items() if v}
    assert summary["seeding"] == "drawn for this session" and summary["seed"].isdigit()
    assert Path(summary["properties"]).name == "properties" and isinstance(summary["active_deviations"], list)
    assert "commit" in summary and summary["failed_tests"] == ["test_sample.py::test_fails"]


@pytest.mark.commands
def test_a_run_interrupted_by_sigint_writes_complete_false(pytester):
    pytester.makeconftest(ROOT_CONFTEST.read_text(encoding="utf-8"))
    pytester.makepyfile(test_sample=INTERRUPTS_ITSELF)
    path = pytester.path / "summary.json"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--summary-json={path}")
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()[-1500:]
    summary = json.loads(path.read_text())
    assert summary["complete"] is False and summary["collected"] == 2 and summary["counts"]["failed"] == 0


@pytest.mark.commands
def test_a_ci_junit_report_under_xdist_has_the_runs_properties_and_each_failure_its_reproduce_command(pytester):
    path = pytester.path / "junit.xml"
    run(pytester, OUTCOMES, "--hypothesis-profile=ci", f"--junitxml={path}", "-n", "2").assert_outcomes(
        passed=1, failed=1, skipped=1, xfailed=1
    )
    suite = ET.parse(path).getroot().find("testsuite")
    properties = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert properties["hypothesis_profile"] == "ci" and properties["hypothesis_seed"] == "derandomized", properties
    assert {"torch", "python", "hypothesis", "commit"} <= set(properties), properties
    failure = suite.find("testcase[@name='test_fails']/failure")
    assert "pytest 'test_sample.py::test_fails' --hypothesis-profile=ci" in failure.text, failure.text[-1500:]
