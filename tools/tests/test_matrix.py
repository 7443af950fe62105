"""The version-matrix report, rendered from made-up results: differences show, findings are called findings."""

import subprocess
import sys

import pytest

from tools import matrix

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
  <testcase classname="tests.test_versions" name="test_a[2.0.0]" time="0.1"/>
  <testcase classname="tests.test_versions" name="test_b" time="0.1">
    <skipped type="pytest.skip" message="torch 1.13.1: a hook only from torch 2.1.0">tests/x.py:3: ...</skipped>
  </testcase>
  <testcase classname="tests.test_versions" name="test_c" time="0.1">
    <failure message="AssertionError: .grad of 'weight' differs">traceback</failure>
  </testcase>
  <testcase classname="tests.test_versions" name="test_d" time="0.1">
    <skipped type="pytest.xfail" message="known"/>
  </testcase>
  <testcase classname="tests.test_versions" name="test_e" time="0.1"/>
  <testcase classname="tests.test_versions" name="test_e" time="0.1"><error message="teardown broke"/></testcase>
  <testcase classname="tests.test_versions.TestGroup" name="test_f" time="0.1"/>
</testsuite></testsuites>"""

ZERO_GRAD = {
    "name": "Module.zero_grad() sets .grad to None",
    "since": "2.0.0",
    "before": False,
    "after": True,
    "source": "torch 2.0 release notes",
    "consequence": "a bare zero_grad() leaves None",
}
SAME = {"name": "CPU dtypes that accumulate sparse embedding gradients", "observed": ["float32"], "consequence": ""}


def observed(version: str, sets_none: bool, documented: bool) -> dict:
    return {
        "environment": {"torch": version, "numpy": "1.26.4", "hypothesis": "6.0"},
        "behaviours": [{**ZERO_GRAD, "observed": sets_none, "documented": documented}, SAME],
    }


def fingerprint(weight: float) -> dict:
    case = {
        "seeded inputs": {"x": [[0.5, 1.0]]},
        "full batch": {"weight": [[weight, 2.0]]},
        "accumulated": {"weight": [[weight, 2.0]], "bias": None},
    }
    return {"torch": "x", "cases": {"Linear(2→1), float64, micro-batches [1], seed 0": case}}


def result(version, outcomes, *, sets_none, documented=None, weight=1.0, **extra) -> matrix.VersionResult:
    documented = sets_none if documented is None else documented
    return matrix.VersionResult(
        version, outcomes=outcomes, observed=observed(version, sets_none, documented), fingerprint=fingerprint(weight), **extra
    )


OLD = {
    "tests/test_a.py::test_hook": matrix.Outcome("skipped", "torch 1.13.1: hook only from torch 2.1.0"),
    "tests/test_a.py::test_sum": matrix.Outcome("passed"),
}
NEW = {"tests/test_a.py::test_hook": matrix.Outcome("passed"), "tests/test_a.py::test_sum": matrix.Outcome("passed")}


def report(*results) -> str:
    return matrix.render(results, command="python -m tools.matrix", context={"date": "today"})


@pytest.mark.parametrize(
    "version, extra",
    [("1.13.1", ["numpy<2"]), ("2.2.2", ["numpy<2"]), ("2.3.0", []), ("2.13.0", []), ("2.14.1", [])],
)
def test_the_requirements_table_pins_numpy_below_2_exactly_for_torch_before_2_3(version, extra):
    assert matrix.requirements(version) == [f"torch=={version}", *extra]


def test_junit_results_are_read_per_node_id_keeping_the_worst_outcome_and_the_skip_reason():
    outcomes = matrix.parse_junit(JUNIT)
    assert outcomes["tests/test_versions.py::test_a[2.0.0]"] == matrix.Outcome("passed")
    assert outcomes["tests/test_versions.py::test_b"] == matrix.Outcome("skipped", "torch 1.13.1: a hook only from torch 2.1.0")
    assert outcomes["tests/test_versions.py::test_c"].status == "failed"
    assert "differs" in outcomes["tests/test_versions.py::test_c"].message
    assert outcomes["tests/test_versions.py::test_d"].status == "xfailed"
    assert outcomes["tests/test_versions.py::test_e"] == matrix.Outcome("error", "teardown broke")
    assert "tests/test_versions.py::TestGroup::test_f" in outcomes


def test_the_report_shows_each_differing_behaviour_with_what_it_means_and_each_differing_outcome_with_why():
    text = report(result("1.13.1", OLD, sets_none=False), result("2.13.0", NEW, sets_none=True))
    differs = text.split("## Behaviour that differs between these versions")[1].split("### The same")[0]
    assert "| Module.zero_grad() sets .grad to None | False before 2.0.0, True from it | False | True |" in differs
    assert "a bare zero_grad() leaves None" in differs and "sparse" not in differs
    assert "✗ (documented" not in text and "disagree with the version table" not in text
    outcomes = text.split("## Properties whose outcome differs between versions")[1].split("## Every test")[0]
    assert "| `tests/test_a.py::test_hook` | skipped (torch 1.13.1: hook only from torch 2.1.0) | pass |" in outcomes
    assert "test_sum" not in outcomes
    assert "| verdict | **green** | **green** |" in text


def test_an_observation_that_disagrees_with_the_version_table_is_reported_as_a_finding():
    text = report(result("2.0.0", NEW, sets_none=False, documented=True), result("2.13.0", NEW, sets_none=True))
    assert "False ✗ (documented: True)" in text
    assert "- torch 2.0.0: Module.zero_grad() sets .grad to None: observed False, the table documents True" in text


def test_a_failure_turns_the_version_red_and_its_message_is_quoted():
    failing = {**NEW, "tests/test_a.py::test_sum": matrix.Outcome("failed", "AssertionError: .grad of 'w' differs")}
    text = report(result("2.13.0", NEW, sets_none=True), result("2.14.1", failing, sets_none=True))
    assert "| verdict | **green** | **red** |" in text and "| failed | 0 | 1 |" in text
    assert "### torch 2.14.1: `tests/test_a.py::test_sum`" in text and ".grad of 'w' differs" in text


@pytest.mark.parametrize(
    "weight, expected",
    [
        (1.0, "**Largest difference between versions: 0**"),
        (1.0 + 2.0**-52, "**Largest difference between versions: 2.22e-16** = 1 u·max|g|"),
        (1.0 + 1e-6, "**a finding: more than 64 u·max|g|"),
    ],
)
def test_the_fingerprint_reports_the_largest_gradient_difference_and_calls_more_than_rounding_a_finding(weight, expected):
    text = report(result("2.13.0", NEW, sets_none=True), result("2.14.1", NEW, sets_none=True, weight=weight))
    assert expected in text
    assert "The same seed draws bitwise the same inputs" in text


def test_fingerprint_differences_take_the_largest_over_every_pair_of_versions():
    prints = {"a": fingerprint(1.0), "b": fingerprint(1.5), "c": fingerprint(0.25)}
    found = {(d.quantity, d.name): d for d in matrix.differences(prints)}
    worst = found[("full batch", "weight")]
    assert (worst.largest, worst.first, worst.second) == (1.25, "b", "c")
    assert worst.magnitude == 2.0 and worst.roundoffs == 1.25 / (2.0**-53 * 2.0)
    assert found[("accumulated", "bias")].largest == 0.0
    assert found[("seeded inputs", "x")].largest == 0.0


def test_a_version_that_could_not_be_installed_is_listed_and_red():
    broken = matrix.VersionResult("9.9.9", problem="pip could not install torch==9.9.9")
    text = report(result("2.13.0", NEW, sets_none=True), broken)
    assert "**red**: pip could not install torch==9.9.9" in text and "## Versions that did not run" in text


def test_arguments_after_a_double_dash_go_to_pytest_and_versions_default_to_the_three_gated_ones():
    versions, options = matrix.parse_args(["--workers", "2", "--", "-k", "zero_grad"])
    assert versions == ["1.13.1", "2.13.0", "2.14.1"]
    assert options.pytest_args == ("-k", "zero_grad") and options.workers == "2"
    assert matrix.parse_args(["2.13.0", "2.13.0"])[0] == ["2.13.0"]


def test_the_matrix_command_needs_no_torch_in_the_python_that_runs_it():
    script = "import sys; sys.modules['torch'] = None; import tools.matrix"
    completed = subprocess.run([sys.executable, "-c", script], cwd=matrix.ROOT, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr


def test_behaviours_with_one_consequence_share_one_note():
    def both(version, sets_none):
        result_ = result(version, NEW, sets_none=sets_none)
        optimizer = {**result_.observed["behaviours"][0], "name": "Optimizer.zero_grad() sets .grad to None"}
        result_.observed["behaviours"].append(optimizer)
        return result_

    text = report(both("1.13.1", False), both("2.13.0", True))
    assert text.count("a bare zero_grad() leaves None") == 1
    assert "- **Module.zero_grad() sets .grad to None; Optimizer.zero_grad() sets .grad to None**: " in text


def test_a_suite_whose_source_changed_between_the_versions_runs_is_called_out():
    same = report(result("2.13.0", NEW, sets_none=True, suite="abc"), result("2.14.1", NEW, sets_none=True, suite="abc"))
    changed = report(result("2.13.0", NEW, sets_none=True, suite="abc"), result("2.14.1", NEW, sets_none=True, suite="def"))
    assert "source changed" not in same
    assert "**The suite's source changed between these versions' runs** (torch 2.13.0: abc, torch 2.14.1: def)" in changed


def test_a_node_id_is_rebuilt_from_the_junit_class_name_with_or_without_the_file_on_disk():
    assert matrix.node_id("tests.test_matrix", "test_x[a-b]") == "tests/test_matrix.py::test_x[a-b]"
    assert matrix.node_id("tests.gone.test_y.TestZ", "test_w", root=None) == "tests/gone/test_y.py::TestZ::test_w"
    assert matrix.node_id("", "tests.test_broken") == "tests.test_broken"


def test_a_matrix_run_writes_a_run_directory_unless_told_to_update_the_committed_reports():
    _, options = matrix.parse_args(["2.13.0"])
    assert options.reports.parent == (matrix.ROOT / ".matrix" / "runs").resolve()
    assert matrix.parse_args(["2.13.0", "--update-reports"])[1].reports == (matrix.ROOT / "reports").resolve()
    assert matrix.parse_args(["--render-only"])[1].reports == (matrix.ROOT / "reports").resolve()


def test_the_version_the_running_python_has_runs_there_without_an_environment():
    import torch

    version = torch.__version__.split("+")[0]
    _, options = matrix.parse_args([version])
    assert matrix.running_environment(version, options) == matrix.Path(matrix.sys.executable)
    assert matrix.running_environment("1.0.0", options) is None
    assert matrix.running_environment(version, matrix.parse_args([version, "--no-running-python"])[1]) is None
    assert matrix.running_environment(version, matrix.parse_args([version, "--reinstall"])[1]) is None


def test_each_known_deviation_shows_per_version_whether_it_is_affected_fixed_or_not_affected():
    reason = "known deviation 'DDP static_graph with no_sync() in the first iteration' (…): crash — https://x"
    key = "tests/test_distributed_options.py::test_static"
    results = [
        result("1.13.1", {key: matrix.Outcome("passed")}, sets_none=False),
        result("2.13.0", {key: matrix.Outcome("xfailed", reason)}, sets_none=True),
        result("2.14.1", {key: matrix.Outcome("failed", f"[XPASS(strict)] {reason}")}, sets_none=True),
    ]
    report = matrix.render(results, command="python -m tools.matrix", context={})
    section = report.split("## Known deviations per version")[1].split("\n## ")[0]
    row = next(line for line in section.splitlines() if line.startswith("| DDP static_graph"))
    assert "pass (not affected" in row and "xfail (affected)" in row and "**XPASS** (fixed" in row, section
    assert row.index("pass (not") < row.index("xfail (affected)") < row.index("**XPASS**"), row
