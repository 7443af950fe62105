"""The audit, benchmark, reliability and summary tools: discovery, counting, judging and rendering."""

import json
import os
import types

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import UnsatisfiedAssumption

from properties.mutants import autograd
from tools import audit, audit_plugin, bench, reliability

pytest_plugins = ["pytester"]


def test_the_audit_discovers_every_mutant_of_every_mutants_module():
    names = {fault.name for fault in audit.mutant_faults()}
    assert {mutant.name for mutant in autograd.MUTANTS} <= names
    assert all(f.pytest_args[0].startswith("--audit-fault=") for f in audit.mutant_faults())


def test_the_plugin_resolves_a_mutant_by_module_and_name_and_rejects_an_unknown_one():
    assert audit_plugin.resolve_mutant("autograd:backward-overwrites-grad") is autograd.BACKWARD_OVERWRITES
    with pytest.raises(pytest.UsageError, match="no mutant"):
        audit_plugin.resolve_mutant("autograd:no-such-fault")


def test_faults_are_selected_by_part_of_their_name_and_an_unknown_name_is_an_error():
    faults = audit.mutant_faults()
    assert [f.name for f in audit.select(faults, ["zero-grad-leaves"])] == ["zero-grad-leaves-residue"]
    with pytest.raises(SystemExit):
        audit.select(faults, ["no-such-fault"])


def a_recipe(model, optimizer, micro_batches, loss_fn, accumulation_steps):
    """Forgets to divide by k."""


def test_a_recipe_is_named_by_its_module_and_function_whether_bare_wrapped_or_keyed():
    spec = f"{__name__}:a_recipe"
    assert audit.recipe_spec(a_recipe) == ("a_recipe", spec, "Forgets to divide by k.")
    wrapped = types.SimpleNamespace(name="no-division", function=a_recipe, description="no 1/k")
    assert audit.recipe_spec(wrapped) == ("no-division", spec, "no 1/k")
    assert audit.named_recipes({"k": a_recipe}) == [("k", a_recipe)]


def fault(name="f", expect_caught=True):
    return audit.Fault(name, "mutant (m)", "breaks things", ("--audit-fault=m:f",), expect_caught=expect_caught)


def record(nodeid, outcome, first_failure=None, ratio=None, bitwise=False):
    return {
        "nodeid": nodeid,
        "when": "call",
        "outcome": outcome,
        "first_failure": first_failure,
        "message": "m",
        "error_over_tolerance": ratio,
        "bitwise": bitwise,
    }


def test_a_fault_is_credited_only_to_tests_that_passed_without_it_with_the_fewest_examples():
    run = audit.Run(1, 2.0, [record("t::a", "failed", 4), record("t::b", "failed", 2), record("t::c", "failed", 1)])
    row = audit.verdict(fault(), run, baseline_failures={"t::c"})
    assert row["caught"] and row["ok"] and [b["test"] for b in row["caught_by"]] == ["t::b", "t::a"]
    assert row["examples"] == 2
    missed = audit.verdict(fault(), audit.Run(0, 1.0, [record("t::a", "passed")]), set())
    assert missed["status"] == "missed" and not missed["ok"]
    broken = audit.verdict(fault(), audit.Run(4, 1.0, [], "usage error"), set())
    assert broken["status"] == "error" and not broken["ok"]
    alarm = audit.verdict(fault(expect_caught=False), run, set())
    assert alarm["caught"] and not alarm["ok"]


def test_the_audit_table_has_one_row_per_fault_and_lists_the_gaps():
    rows = [
        audit.verdict(fault("caught"), audit.Run(1, 3.0, [record("t::test_x", "failed", 3)]), set()),
        audit.verdict(fault("missed"), audit.Run(0, 2.0, [record("t::test_x", "passed")]), set()),
        audit.verdict(fault("control", expect_caught=False), audit.Run(0, 2.0, []), set()),
    ]
    report = {
        "torch": "2.x",
        "profile": "dev",
        "seed": "0",
        "xdist": False,
        "jobs": 2,
        "seconds": 9.0,
        "baseline": {"tests_run": 1, "failures": [], "seconds": 1.0},
        "faults": rows,
        "notes": ["n"],
    }
    text = audit.render_markdown(report)
    assert "**1/2 faults caught**" in text
    assert "| `caught` | mutant (m) | yes | `test_x` | 3 | structural | 3.0 |" in text
    assert "| `missed` | mutant (m) | **MISSED** | — | — | — | 2.0 |" in text
    assert "no (as it should)" in text
    assert "## Gaps" in text and "- `missed` (breaks things): no test failed." in text
    assert "1 tests (tests/meta left out)" in text
    restricted = audit.render_markdown({**report, "paths": ["tests/test_pipeline.py"]})
    assert "1 tests (only tests/test_pipeline.py)" in restricted
    json.dumps(report)


def test_the_counter_numbers_the_first_failing_example_and_does_not_count_rejected_ones():
    def body(x):
        if x == 1:
            raise UnsatisfiedAssumption()
        assert x < 3

    counter = audit_plugin.ExampleCounter(body)
    counter(0)
    with pytest.raises(UnsatisfiedAssumption):
        counter(1)
    counter(2)
    for x in (3, 4):
        with pytest.raises(AssertionError):
            counter(x)
    assert counter.calls == 4 and counter.first_failure == 3, "a rejected example counted as one run"


def test_a_counted_hypothesis_test_runs_every_example_through_the_counter_and_replays_them():
    seen = []

    @settings(max_examples=7, database=None, derandomize=True)
    @given(x=st.integers(), data=st.data())
    def prop(x, data):
        seen.append((x, data.draw(st.booleans())))

    counter = audit_plugin.ExampleCounter(prop.hypothesis.inner_test, keep=True)
    original = audit_plugin.counted_run(prop.hypothesis, counter)
    try:
        prop()
    finally:
        prop.hypothesis.inner_test = original
    assert counter.calls == len(seen) == len(counter.kept) > 0
    drawn, seen[:] = list(seen), []
    counter.replay()
    assert seen == drawn, "the replay did not call the body on the same examples"


def test_replay_data_hands_back_the_recorded_draws_in_order():
    data = audit_plugin.ReplayData([1, "a"])
    assert (data.draw(st.integers()), data.draw(st.text())) == (1, "a")
    with pytest.raises(LookupError):
        data.draw(st.integers())


def test_the_benchmark_sums_examples_and_seconds_per_family_and_fits_the_growth_exponent():
    tests = [
        {
            "nodeid": "tests/test_a.py::t1",
            "when": "call",
            "examples": 10,
            "large_examples": 2,
            "hypothesis_seconds": 1.0,
            "cold_seconds": 2.0,
            "replay_seconds": 0.5,
        },
        {
            "nodeid": "tests/test_a.py::t2",
            "when": "call",
            "examples": 30,
            "hypothesis_seconds": 1.0,
            "cold_seconds": None,
            "replay_seconds": 1.5,
        },
        {"nodeid": "tests/test_b.py::t", "when": "call", "examples": None, "hypothesis_seconds": 9.0},
    ]
    (row,) = bench.families(tests)
    assert (row["family"], row["examples"], row["seconds"], row["examples_per_second"]) == ("a", 40, 3.0, 13.333)
    assert row["replay_ratio"] == 1.0 and bench.total_row([row])["replay_ratio"] == 1.0
    assert bench.slope([1, 2, 4, 8], [3, 12, 48, 192]) == 2.0
    text = bench.render_markdown(
        {
            "torch": "2.x",
            "profile": "dev",
            "seed": "0",
            "cores": 2,
            "load_average": None,
            "throughput": {"families": [row], "all": bench.total_row([row]), "failed": []},
        }
    )
    assert "| a | 2 | 40 | 2 (5%) | 3.00 | 13.3 | 2.00 | 2.00 | 1.00 |" in text and "meets the aim" in text


def test_the_benchmark_splits_each_worker_s_wall_time_into_phases_that_add_up_to_it():
    def report(nodeid, when, start, stop, worker):
        return {"nodeid": nodeid, "when": when, "start": start, "stop": stop, "worker": worker}

    serial = {
        "session_start": 102.0,
        "collected": 103.0,
        "workers": {},
        "reports": [report("t::a", "setup", 103.0, 108.0, "main"), report("t::a", "call", 108.0, 110.0, "main")]
        + [report("t::b", "call", 110.5, 112.0, "main")],
    }
    one = {"seconds": 14.0, "phases": bench.phases(serial, 100.0, 114.0)}
    assert one["phases"]["main"] == {
        "start": 2.0,
        "collection": 1.0,
        "scheduling": 0.0,
        "setup": 5.0,
        "call": 3.5,
        "teardown": 0.0,
        "between": 0.5,
        "end": 2.0,
    }
    parallel = {
        "session_start": 100.5,
        "collected": 100.6,
        "workers": {"gw0": {"ready": 103.0, "collected": 104.0}, "gw1": {"ready": 103.5, "collected": 104.0}},
        "reports": [report("t::a", "setup", 104.0, 110.0, "gw0"), report("t::a", "call", 110.0, 112.0, "gw0")]
        + [report("t::b", "call", 104.0, 106.0, "gw1")],
    }
    many = {"seconds": 13.0, "phases": bench.phases(parallel, 100.0, 113.0)}
    assert all(sum(row.values()) == 13.0 for row in many["phases"].values())
    assert many["phases"]["gw1"]["end"] == 7.0 and bench.slowest(parallel, "setup") == [
        {"nodeid": "t::a", "worker": "gw0", "seconds": 6.0}
    ]
    lines = bench.standing_in_the_way(one, many)
    assert "set-up 5.0 → 6.0 s" in lines[1] and "finished their last tests 6.0 s apart" in lines[3]
    text = "\n".join(bench.phase_table({"n0": one, "n_auto": many, "in_the_way": lines}))
    assert (
        "| fixture set-up (rank pools, models) | 5.0 | 6.0 | 0.0 |" in text
        and "| **wall** | **14.0** | **13.0** | **13.0** |" in text
    )


def test_an_example_counts_as_from_the_large_end_past_1024_elements_3_rows_8_layers_or_4_steps():
    from properties.case import Case
    from properties.models import ModelSpec

    small = Case(ModelSpec("mlp", 4, 4, hidden=4), (3, 1))
    assert not audit_plugin.from_the_large_end({"case": small, "steps": 4})
    assert audit_plugin.from_the_large_end({"case": small, "steps": 5})
    assert audit_plugin.from_the_large_end({"case": Case(ModelSpec("linear", 32, 32), (1,))})
    assert audit_plugin.from_the_large_end({"case": Case(ModelSpec("linear", 2, 2), (1, 4))})
    assert audit_plugin.from_the_large_end({"case": Case(ModelSpec("deep", 1, 1, hidden=1, depth=9), (1,))})


def test_reliability_prints_a_reproduce_command_per_failure():
    command = reliability.reproduce_command("tests/test_a.py::t[x]", "thorough", 7)
    assert command == "pytest 'tests/test_a.py::t[x]' --hypothesis-profile=thorough --hypothesis-seed=7"
    row = {
        "seed": 7,
        "passed": False,
        "status": "FAIL",
        "tests": 1,
        "examples": 5,
        "seconds": 1.0,
        "failures": [{"test": "tests/test_a.py::t[x]", "message": "boom", "reproduce": command}],
    }
    text = reliability.render_markdown(
        {"torch": "2.x", "profile": "thorough", "with_meta": False, "seconds": 1.0, "seeds": [row]}
    )
    assert "**0/1 seeds passed**" in text and "| 7 | FAIL | 1 | 5 | 1.0 | — | — | `t[x]` |" in text and command in text
    dated = {**row, "commit": "abc1234", "finished": "2026-12-02T22:24:59+00:00"}
    text = reliability.render_markdown(
        {"torch": "2.x", "profile": "thorough", "with_meta": False, "seconds": 1.0, "seeds": [dated]}
    )
    assert "| 7 | FAIL | 1 | 5 | 1.0 | abc1234 | 2026-12-02 | `t[x]` |" in text


SUMMARY_TESTS = """
import pytest

def test_passes():
    pass

def test_fails():
    assert False

@pytest.mark.skip(reason="no")
def test_skipped():
    pass

@pytest.mark.xfail(reason="known", strict=True)
def test_xfails():
    assert False
"""


def summary_has_its_own_entry_point() -> bool:
    """Whether an installed pytest11 entry point loads properties.summary under a name of its own."""
    from importlib.metadata import entry_points

    try:
        points = entry_points(group="pytest11")
    except TypeError:
        points = entry_points().get("pytest11", [])
    return any(point.value == "properties.summary" for point in points)


def test_the_summary_plugin_writes_torch_profile_seed_and_counts(pytester):
    pytester.makepyfile(test_sample=SUMMARY_TESTS)
    path = pytester.path / "out" / "summary.json"
    load = [] if summary_has_its_own_entry_point() else ["-p", "properties.summary"]
    profile = settings.get_current_profile_name()  # a seed counts only where the profile does not derandomize (ci does)
    try:
        result = pytester.runpytest(
            *load, "-p", "no:cacheprovider", f"--summary-json={path}", "--hypothesis-profile=dev", "--hypothesis-seed=5"
        )
    finally:
        settings.load_profile(profile)
    result.assert_outcomes(passed=1, failed=1, skipped=1, xfailed=1)
    summary = json.loads(path.read_text())
    assert summary["counts"] == {"passed": 1, "failed": 1, "error": 0, "skipped": 1, "xfailed": 1, "xpassed": 0}
    assert summary["seed"] == "5" and summary["failed_tests"] == ["test_sample.py::test_fails"]
    assert summary["torch"] and summary["profile"] and summary["exitstatus"] == 1


def test_examples_until_failure_counts_the_examples_hypothesis_ran_and_skips_the_rejected_ones():
    statuses = ["passed", "gave_up", "passed", "gave_up", "failed", "passed", "failed"]
    assert audit_plugin.examples_until_failure([("generate", s) for s in statuses]) == (5, 3)
    assert audit_plugin.examples_until_failure([("explicit", "failed"), ("generate", "passed")]) == (1, None)
    assert audit_plugin.examples_until_failure([("generate", "passed"), ("target", "failed"), ("shrink", "failed")]) == (2, 2)


def test_the_audits_subprocesses_observe_without_tracing_every_line_before_python_3_12():
    import sys

    environment = audit.pytest_environment()
    assert ("HYPOTHESIS_EXPERIMENTAL_OBSERVABILITY_NOCOVER" in environment) == (sys.version_info < (3, 12))
    assert environment["PATH"] == os.environ["PATH"]


def test_a_search_inside_a_test_body_is_counted_from_hypothesis_observations():
    from hypothesis import find

    counter = audit_plugin.ExampleCounter(None)
    with audit_plugin.observations_into(counter):
        find(st.integers(0, 1000), lambda n: n >= 0, settings=settings(database=None, phases=[Phase.generate]))
        find(st.integers(0, 1000), lambda n: n >= 0, settings=settings(database=None, phases=[Phase.generate]))
    assert (counter.runs, counter.calls, counter.first_failure) == (2, 2, 1), "each find stops at its first example"


def test_recipe_options_become_the_plugins_recipe_flags():
    flags = audit.recipe_flags({"clip_norm": 0.1, "scheduler": True, "scaler": False, "optimizers": ("SGD", "Adam")})
    assert flags == ("--recipe-clip-norm=0.1", "--recipe-optimizers=SGD,Adam", "--recipe-scheduler")
    assert audit.recipe_flags({"max_examples": 5}) == ("--recipe-examples=5",)


def comparison_failure(actual, expected, tolerance, **kwargs) -> AssertionError:
    """The AssertionError properties.compare raises for these tensors."""
    import torch

    from properties import compare

    with pytest.raises(AssertionError) as caught:
        compare.assert_grads_close(
            {"w": torch.tensor(actual, dtype=torch.float64)},
            {"w": torch.tensor(expected, dtype=torch.float64)},
            tolerance=tolerance,
            **kwargs,
        )
    return caught.value


def test_the_error_over_tolerance_is_read_from_a_comparison_failures_fields_and_bitwise_is_told_apart():
    from properties.compare import EXACT, ComparisonError, Tolerance

    loose = comparison_failure([1.0, 2.0], [1.0, 2.5], Tolerance(1e-3, 1e-3, "test"))
    assert isinstance(loose, ComparisonError) and loose.parameter == ".grad of 'w'" and not loose.bitwise
    assert loose.ratio == pytest.approx(0.5 / (1e-3 + 1e-3 * 2.5))
    assert audit_plugin.failure_margin(loose) == {"error_over_tolerance": loose.ratio, "bitwise": False}
    exact = comparison_failure([1.0], [1.5], EXACT)
    assert audit_plugin.failure_margin(exact) == {"error_over_tolerance": "inf", "bitwise": True}
    structural = AssertionError(".grad of 'w': expected a tensor (max |value| 1.5), got None; case: []")
    assert audit_plugin.failure_margin(structural) == {"error_over_tolerance": None, "bitwise": False}
    quoted = AssertionError(f"assert 'x' in {str(loose)!r}")  # a message quoted by a failed assert, newlines escaped
    assert audit_plugin.failure_margin(quoted)["error_over_tolerance"] is None
    within = ComparisonError("w: float64 differs", parameter="w", ratio=0.5, tolerance=Tolerance(0.0, 1.0, "r"))
    assert audit_plugin.failure_margin(within)["error_over_tolerance"] is None, "a ratio ≤ 1 is no numeric failure"
    shapes = comparison_failure([1.0, 2.0], [1.0], Tolerance(1e-3, 1e-3, "test"))
    assert shapes.ratio is None and audit_plugin.failure_margin(shapes)["error_over_tolerance"] is None


def test_the_margin_is_found_inside_a_recipe_failure_a_group_of_failures_and_an_explicit_cause():
    from properties.compare import Tolerance
    from properties.recipes import RecipeError

    inner = comparison_failure([1.0], [2.0], Tolerance(rtol=0.01, atol=0.0, reason="test"))
    recipe = RecipeError("recipe fails: the parameters", property="parameters", comparison=inner)
    assert audit_plugin.failure_margin(recipe)["error_over_tolerance"] == pytest.approx(50)
    failed = pytest.fail.Exception(str(recipe), pytrace=False)
    failed.__cause__ = recipe  # as `pytest --recipe` raises it
    assert audit_plugin.failure_margin(failed)["error_over_tolerance"] == pytest.approx(50)
    both = RecipeError("2 recipe properties fail", others=(RecipeError("steps"), recipe))
    assert audit_plugin.failure_margin(both)["error_over_tolerance"] == pytest.approx(50)
    text_only = pytest.fail.Exception("recipe fails\n  " + str(inner), pytrace=False)
    assert audit_plugin.failure_margin(text_only)["error_over_tolerance"] is None, "figures are not read from text"
    bigger = comparison_failure([1.0], [3.0], Tolerance(rtol=0.01, atol=0.0, reason="test"))
    try:
        group_type = ExceptionGroup
    except NameError:  # Python < 3.11: the backport Hypothesis itself depends on there
        from exceptiongroup import ExceptionGroup as group_type
    group = group_type("Hypothesis found 2 distinct failures.", [inner, RuntimeError("boom"), bigger])
    assert audit_plugin.failure_margin(group)["error_over_tolerance"] == pytest.approx(2 / 0.03, rel=1e-2)
    wrapped = RuntimeError("while checking")
    wrapped.__cause__ = inner
    assert audit_plugin.failure_margin(wrapped)["error_over_tolerance"] == pytest.approx(50)
    implicit = RuntimeError("while handling an expected failure")
    implicit.__context__ = inner
    assert audit_plugin.failure_margin(implicit)["error_over_tolerance"] is None


def test_a_faults_margin_is_its_strongest_catch_and_faults_close_to_the_bound_are_named():
    def row(name, *records):
        return audit.verdict(fault(name), audit.Run(1, 1.0, list(records)), set())

    strong = row("strong", record("t::a", "failed", 1, 3.2e5), record("t::b", "failed", 2, 4.0))
    bitwise = row("bitwise", record("t::a", "failed", 1, "inf", bitwise=True))
    structural = row("structural", record("t::a", "failed", 1))
    weak = row("weak", record("t::a", "failed", 1, 2.5), record("t::b", "failed", 1, 1.5))
    covered = row("covered", record("t::a", "failed", 1, 3.0), record("t::b", "failed", 1))
    assert (strong["margin"], strong["structural"], strong["structural_tests"]) == (3.2e5, False, 0)
    assert [b["error_over_tolerance"] for b in strong["caught_by"]] == [3.2e5, 4.0]
    assert (bitwise["margin"], bitwise["margin_bitwise"]) == ("inf", True)
    assert (structural["margin"], structural["structural"]) == (None, True)
    assert (covered["margin"], covered["structural"], covered["structural_tests"]) == (3.0, False, 1)
    cells = [audit.margin_cell(r) for r in (strong, bitwise, structural, weak, covered)]
    assert cells == ["3.2e+05", "∞ (bitwise)", "structural", "2.5", "3 (also structural)"]
    report = {
        "torch": "2.x",
        "profile": "dev",
        "seed": "0",
        "xdist": False,
        "jobs": 1,
        "seconds": 5.0,
        "baseline": {"tests_run": 2, "failures": [], "seconds": 1.0},
        "faults": [strong, bitwise, structural, weak, covered],
    }
    text = audit.render_markdown(report)
    assert "| examples | error ÷ tolerance | seconds |" in text
    assert "| `strong` | mutant (m) | yes | `a`, `b` | 1 | 3.2e+05 | 1.0 |" in text
    assert "**Close to the bound**" in text and "`weak` (2.5)" in text
    assert "also caught structurally" in text and "`covered` (3)" in text
    assert "`strong`" not in text.split("**Close to the bound**")[1]
    json.loads(json.dumps(report, allow_nan=False))
    assert "No caught fault is close to the bound" in audit.render_markdown({**report, "faults": [strong, bitwise]})


MARGIN_TESTS = """
import pytest
from properties.compare import ComparisonError, Tolerance

def test_numeric():
    raise ComparisonError("w: (1,) float64 differs", parameter="w", ratio=50.0, tolerance=Tolerance(0.01, 0.0, "r"))

def test_structural():
    assert None is not None, ".grad of 'w' is None"

def test_passes():
    pass
"""


def test_the_recorder_writes_each_failures_error_over_tolerance(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(audit.ROOT), os.environ.get("PYTHONPATH")])))
    pytester.makepyfile(test_margins=MARGIN_TESTS)
    path = pytester.path / "record.json"
    result = pytester.runpytest_subprocess(
        "-p", "tools.audit_plugin", "-p", "no:cacheprovider", "-p", "no:grad_accumulation", f"--audit-record={path}"
    )
    result.assert_outcomes(passed=1, failed=2)
    records = {r["nodeid"].split("::")[-1]: r for r in json.loads(path.read_text())["tests"]}
    assert records["test_numeric"]["error_over_tolerance"] == 50
    assert records["test_structural"]["error_over_tolerance"] is None
    assert "error_over_tolerance" not in records["test_passes"]


def test_a_tool_run_outside_a_clone_refuses_with_a_message_that_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(audit, "ROOT", tmp_path)
    with pytest.raises(SystemExit) as stopped:
        audit.require_clone("python -m tools.audit")
    assert "from a clone of the repository" in str(stopped.value) and str(tmp_path) in str(stopped.value)
