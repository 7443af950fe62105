"""The version-matrix report, rendered from made-up results: differences show, findings are called findings."""

import json
import signal
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
    assert matrix.findings([broken]) == ["torch 9.9.9: did not finish: pip could not install torch==9.9.9"]
    text = report(result("2.13.0", NEW, sets_none=True), broken)
    assert "**red**: pip could not install torch==9.9.9" in text and "## Versions that did not run" in text


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


PIP_INDEX_OUTPUT = """torch (2.15.0)
Available versions: 2.15.0, 2.14.1, 2.14.0, 2.13.0+cpu, 2.13.0, 2.2.2, 2.0.1, 2.0.0, 1.13.1, 1.13.0, 1.12.1
  INSTALLED: 2.13.0+cpu
  LATEST:    2.15.0
"""


def offered(*versions: str) -> list[str]:
    return ["1.12.1", "1.13.0", "1.13.1", "2.0.0", "2.0.1", "2.13.0+cpu", "2.13.0", *versions]


def test_pip_index_versions_output_is_read_into_the_offered_versions():
    assert matrix.parse_index_versions(PIP_INDEX_OUTPUT)[:3] == ["2.15.0", "2.14.1", "2.14.0"]
    assert matrix.parse_index_versions("ERROR: No matching distribution found for torch") == []


@pytest.mark.parametrize("newest", ["2.15.0", "2.16.1", "3.0.0"])
def test_the_default_set_is_the_oldest_the_pinned_and_the_newest_release_the_index_offers(monkeypatch, newest):
    monkeypatch.setattr(
        matrix, "index_versions", lambda package="torch": offered(newest, f"{newest}+cpu", "9.0.0rc1", "9.1.0.dev1")
    )
    assert matrix.chosen_versions(matrix.parse_args([]), None) == ["1.13.1", "2.13.0", newest]


def test_all_is_the_latest_patch_of_every_minor_release_from_the_oldest_supported_to_the_newest(monkeypatch):
    monkeypatch.setattr(matrix, "index_versions", lambda package="torch": offered("2.14.0", "2.14.1", "2.15.0", "2.16.0rc2"))
    options = matrix.parse_args(["--all"])
    assert matrix.chosen_versions(options, None) == ["1.13.1", "2.0.1", "2.13.0", "2.14.1", "2.15.0"]
    assert options.remove and not matrix.parse_args(["--all", "--keep"]).remove and not matrix.parse_args([]).remove


def test_arguments_after_a_double_dash_go_to_pytest_and_named_versions_need_no_index(monkeypatch):
    monkeypatch.setattr(matrix, "index_versions", lambda package="torch": pytest.fail("the index was asked"))
    options = matrix.parse_args(["2.13.0", "2.13.0", "--workers", "2", "--", "-k", "zero_grad"])
    assert options.pytest_args == ("-k", "zero_grad") and options.workers == "2"
    assert matrix.chosen_versions(options, None) == ["2.13.0"]


def test_the_list_command_writes_the_versions_as_github_outputs(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(matrix, "index_versions", lambda package="torch": offered("2.15.0"))
    assert matrix.main(["--list", "--cache", str(tmp_path), "--github-output", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.strip() == "1.13.1 2.13.0 2.15.0"
    assert (tmp_path / "out").read_text() == 'torch=["1.13.1", "2.13.0", "2.15.0"]\nlist=1.13.1 2.13.0 2.15.0\n'


def test_a_fresh_checkout_s_report_shows_every_version_as_not_run_and_exits_non_zero(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(matrix, "index_versions", lambda package="torch": offered("2.15.0"))
    assert matrix.main(["--render-only", "--cache", str(tmp_path)]) == 1
    text = (tmp_path / "empty-run" / "matrix.md").read_text()
    assert "| verdict | **not run**: no results in" in text and text.count("**not run**") == 3
    assert "**green**" not in text and "**Matrix: red**" in text
    out = capsys.readouterr().out
    assert all(f"matrix not green: torch {v}: not run" in out for v in ("1.13.1", "2.13.0", "2.15.0")), out


def write_results(folder, result: matrix.VersionResult, junit: str = JUNIT) -> None:
    (folder / "matrix").mkdir(parents=True, exist_ok=True)
    record = {"date": "2026-12-06", "profile": "dev", "seed": "0", "pytest_args": [], "frameworks": "installed"}
    matrix.raw(folder, result.version, "run.json").write_text(json.dumps(record))
    matrix.raw(folder, result.version, "observed.json").write_text(json.dumps(result.observed))
    matrix.raw(folder, result.version, "fingerprint.json").write_text(json.dumps(result.fingerprint))
    matrix.raw(folder, result.version, "xml").write_text(junit)


PASSING = JUNIT.split('\n  <testcase classname="tests.test_versions" name="test_b"')[0] + "</testsuite></testsuites>"


def test_a_re_render_uses_the_run_directory_alone_and_a_planned_version_without_results_is_not_run(tmp_path, capsys):
    run = tmp_path / "runs" / "20261206-120000"
    write_results(run, result("2.13.0", NEW, sets_none=True), PASSING)
    (run / "versions.txt").write_text("2.13.0 2.15.0\n")
    write_results(tmp_path / "elsewhere", result("2.15.0", NEW, sets_none=True), PASSING)
    assert matrix.main(["--render-only", "--cache", str(tmp_path)]) == 1
    text = (run / "matrix.md").read_text()
    assert "| verdict | **green** | **not run**: no results in" in text and "| ran on | 2026-12-06 | — |" in text
    assert "matrix not green: torch 2.15.0: not run" in capsys.readouterr().out
    assert matrix.main(["--render-only", "--cache", str(tmp_path), "2.13.0"]) == 0


@pytest.mark.parametrize(
    "change, expected",
    [
        ({}, []),
        (
            {"outcome": matrix.Outcome("failed", "AssertionError: .grad differs")},
            ["torch 2.14.1: 1 test(s) failed: tests/test_a.py::test_sum"],
        ),
        (
            {"outcome": matrix.Outcome("failed", "[XPASS(strict)] known deviation 'DDP join' (…): crash")},
            ["torch 2.14.1: registered deviation 'DDP join' XPASSes in tests/test_a.py::test_sum (fixed there?)"],
        ),
        (
            {"weight": 1.0 + 1e-6},
            ["numeric fingerprint: full batch .grad of 'weight' (Linear(2→1), float64, micro-batches [1], seed 0) differs by"],
        ),
    ],
)
def test_the_matrix_is_red_for_a_failure_an_xpass_or_a_fingerprint_beyond_rounding_and_says_which(change, expected):
    outcomes = {**NEW, "tests/test_a.py::test_sum": change["outcome"]} if "outcome" in change else NEW
    results = [
        result("2.13.0", NEW, sets_none=True),
        result("2.14.1", outcomes, sets_none=True, weight=change.get("weight", 1.0)),
    ]
    found = matrix.findings(results)
    assert len(found) == len(expected) and all(line.startswith(prefix) for line, prefix in zip(found, expected)), found
    assert ("**Matrix: green**" in report(*results)) == (not expected)


def test_updating_the_reports_replaces_every_committed_raw_result_with_this_run_s(tmp_path):
    run, reports = tmp_path / "run", tmp_path / "reports"
    write_results(run, result("2.15.0", NEW, sets_none=True), PASSING)
    (run / "matrix.md").write_text(f"# new\n{matrix.ROOT}/tests/test_a.py:3: in test_sum\n")
    (reports / "matrix").mkdir(parents=True)
    (reports / "matrix" / "torch-2.14.1.xml").write_text("old")
    matrix.update_reports(run, reports)
    assert sorted(p.name for p in (reports / "matrix").iterdir()) == [f"torch-2.15.0.{s}" for s in sorted(matrix.RAW)]
    assert (reports / "matrix.md").read_text() == "# new\ntests/test_a.py:3: in test_sum\n"


def test_a_resolver_s_refusal_of_the_frameworks_extra_is_said_in_one_line():
    uv = "  cause: Because pytorch-lightning>=2.6.6 depends on torch>=2.1.0 and grad-accumulation-properties[frameworks]==0.1.0 depends on pytorch-lightning==2.6.6"
    pip = "The conflict is caused by:\n    The user requested torch==1.13.1\n    accelerate 1.15.0 depends on torch>=2.0.0"
    assert matrix.conflict_reason(uv) == "pytorch-lightning>=2.6.6 needs torch>=2.1.0"
    assert matrix.conflict_reason(pip) == "accelerate 1.15.0 needs torch>=2.0.0"


def test_a_framework_installed_beside_a_torch_below_its_declared_floor_is_named_in_the_frameworks_row(monkeypatch):
    """The resolver installs [frameworks] beside torch 2.1.2 (transformers 5 keeps its torch>=2.6 under an extra);
    the session's Python, asked what it installed, names the framework and the floor for the report's row."""
    import contextlib
    import importlib.metadata
    import io

    versions = {"torch": "2.1.2+cu121", "transformers": "5.24.0"}
    requires = {"transformers": ['torch>=2.6; extra == "torch"']}
    real_version, real_requires = importlib.metadata.version, importlib.metadata.requires
    monkeypatch.setattr(importlib.metadata, "version", lambda name: versions.get(name) or real_version(name))
    monkeypatch.setattr(importlib.metadata, "requires", lambda name: requires.get(name) or real_requires(name))

    class Session:
        def run(self, python, flag, code, **kwargs):
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                exec(code, {})
            return printed.getvalue()

    found = matrix.frameworks_refusing_torch(Session(), sys.executable)
    assert found.startswith("transformers 5.24.0 needs torch>=2.6"), found


def test_the_running_python_runs_a_version_it_has_and_no_other():
    import torch

    version = torch.__version__.split("+")[0]
    assert matrix.runs_here(version, matrix.parse_args([version]))
    assert not matrix.runs_here("1.0.0", matrix.parse_args(["1.0.0"]))
    assert not matrix.runs_here(version, matrix.parse_args([version, "--no-running-python"]))


def test_a_matrix_started_with_sigint_ignored_lets_its_sessions_receive_sigint():
    script = (
        "import signal, subprocess, sys\n"
        "from tools import matrix\n"
        "matrix.deliver_sigint()\n"
        "probe = 'import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)'\n"
        "print(subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True).stdout.strip())"
    )
    ignoring = lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)  # noqa: E731  (what `cmd &` in a script does)
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=matrix.ROOT, capture_output=True, text=True, preexec_fn=ignoring
    )
    assert completed.stdout.strip() == "True", completed.stderr
