"""The soak (python -m tools.reliability --soak): its plugin records every failure and goes on; chunks aggregate and render."""

import json
import types

import pytest
import torch

from properties.case import Case
from properties.models import ModelSpec
from tools import reliability, soak_plugin

pytest_plugins = ["pytester"]

FAKE_PROPERTIES = """
import torch
from hypothesis import assume, given, strategies as st
from properties.compare import ComparisonError, Tolerance, assert_tensor_close


class Failures(AssertionError):
    def __init__(self, by_property):
        self.by_property = by_property
        super().__init__("; ".join(str(e) for _, e in by_property))


@given(x=st.integers(0, 99), dtype=st.sampled_from([torch.float64, torch.float32]))
def test_within_a_tolerance_below_50(x, dtype):
    assume(x != 7)
    expected = torch.tensor([1.0], dtype=dtype)
    assert_tensor_close(expected + x / 100, expected, name="value", tolerance=Tolerance(0.0, 0.5, "made up"))


@given(data=st.data())
def test_two_properties_fail_on_large_n(data):
    n = data.draw(st.integers(0, 9), label="n")
    if n > 7:
        second = ComparisonError("second differs", parameter="w", ratio=3.5, tolerance=Tolerance(0.0, 1.0, "made up"))
        raise Failures([("first", AssertionError(f"first fails at {n}")), ("second", second)])


def test_not_soaked():
    pass
"""


def test_the_plugin_records_every_failure_with_its_case_and_excess_and_the_run_goes_on(pytester):
    pytester.makepyfile(test_fake=FAKE_PROPERTIES)
    record = pytester.path / "soak.json"
    result = pytester.runpytest_inprocess(
        "-p", "tools.soak_plugin", "--soak-examples=60", f"--soak-record={record}", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=3)
    tests = {t["nodeid"].split("::")[-1]: t for t in json.loads(record.read_text())["tests"]}
    close = tests["test_within_a_tolerance_below_50"]["soak"]
    assert close["given"] and close["max_examples"] == 60 and close["family"] == "fake"
    assert 0 < close["failing_examples"] < close["examples"] <= 60
    assert sum(b["examples"] for b in close["dtypes"].values()) == close["examples"]
    assert set(close["dtypes"]) <= {"float64", "float32"}
    assert all("x=7;" not in f["case"] for f in close["failures"]), "a rejected example was counted"
    for failure in close["failures"]:
        x = int(failure["case"].split(";")[0].removeprefix("x="))
        assert x > 50 and failure["excess"] == pytest.approx(x / 50) and failure["comparison"] == "value"
        assert "error ÷ tolerance" in failure["message"] and len(failure["message"].splitlines()) <= 16
    assert close["worst"] <= 1 and close["worst_comparison"] == "value" and close["worst_case"].startswith("x=")
    split = tests["test_two_properties_fail_on_large_n"]["soak"]
    assert split["examples"] == 10 and split["failing_examples"] == 2 and split["failure_count"] == 4
    assert {(f["property"], f["case"], f["excess"]) for f in split["failures"]} == {
        ("first", "n=8", None),
        ("second", "n=8", 3.5),
        ("first", "n=9", None),
        ("second", "n=9", 3.5),
    }
    assert tests["test_not_soaked"]["soak"] == {"family": "fake", "given": False}
    summary = result.stdout.str()
    assert "test_fake.py::test_two_properties_fail_on_large_n: 10 examples, 2 failing" in summary
    assert "[second] (error ÷ tolerance 3.5): n=9" in summary


PINNED = """
import torch
from hypothesis import given
from properties import strategies
from properties.strategies import dtypes

@given(low=dtypes(), high=dtypes(low_precision=False), module=strategies.dtypes())
def test_pinned(low, high, module):
    assert low == module == torch.float16 and high == torch.float64
"""


def test_a_dtype_pin_makes_every_low_precision_draw_that_dtype_and_is_undone_afterwards(pytester):
    from properties import strategies

    original = strategies.dtypes
    pytester.makepyfile(test_pin=PINNED)
    result = pytester.runpytest_inprocess("-p", "tools.soak_plugin", "--soak-dtype=float16", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_pinned: * examples, 0 failing*"])  # the soak records a failing example and goes on
    assert strategies.dtypes is original


def test_a_float32_pin_narrows_the_tutorial_loop_dtypes_and_a_float16_pin_leaves_them(pytester):
    from properties.invariants import tutorial

    original = tutorial.FIRST_LOOP_DTYPES
    pytester.makepyfile(
        test_tutorial_pin="""
import torch
from hypothesis import given
from properties.invariants import tutorial

@given(dtype=tutorial.FIRST_LOOP_DTYPES)
def test_pinned(dtype):
    assert dtype == torch.float32
"""
    )
    pinned = pytester.runpytest_inprocess("-p", "tools.soak_plugin", "--soak-dtype=float32", "-p", "no:cacheprovider")
    pinned.assert_outcomes(passed=1)
    pinned.stdout.fnmatch_lines(["*test_pinned: * examples, 0 failing*"])  # the soak records a failing example and goes on
    assert tutorial.FIRST_LOOP_DTYPES is original
    pytester.makepyfile(
        test_tutorial_pin="""
import torch
from properties.invariants import tutorial

def test_untouched():
    assert tutorial.FIRST_LOOP_DTYPES.elements == (torch.float64, torch.float32)
"""
    )
    untouched = pytester.runpytest_inprocess("-p", "tools.soak_plugin", "--soak-dtype=float16", "-p", "no:cacheprovider")
    untouched.assert_outcomes(passed=1)
    assert tutorial.FIRST_LOOP_DTYPES is original


def test_the_dtype_of_an_example_is_found_in_a_case_a_dict_a_wrapper_or_a_dtype_and_else_is_not_guessed():
    case = Case(ModelSpec("linear", 1, 1), (1,), torch.float32)
    assert soak_plugin.example_dtype([case]) == "float32"
    assert soak_plugin.example_dtype([{"case": case, "accumulation_steps": 2}]) == "float32"
    assert soak_plugin.example_dtype([types.SimpleNamespace(case=case)]) == "float32"
    assert soak_plugin.example_dtype([3, torch.bfloat16]) == "bfloat16"
    assert soak_plugin.example_dtype([7, "Linear(1→2) → tanh, float64, seed 3"]) == "float64"
    assert soak_plugin.example_dtype(["float64 vs float32"]) == "n/a"
    assert soak_plugin.example_dtype([12345]) == "n/a"


def soaked(nodeid, family, examples, dtypes, worst=None, failures=(), seconds=1.0, max_examples=100):
    return {
        "nodeid": nodeid,
        "when": "call",
        "outcome": "passed",
        "soak": {
            "family": family,
            "given": True,
            "max_examples": max_examples,
            "examples": examples,
            "failing_examples": len({f["example"] for f in failures}),
            "failure_count": len(failures),
            "failures": list(failures),
            "worst": worst,
            "worst_comparison": "grad of 'w'",
            "worst_case": f"case of {nodeid}",
            "dtypes": {d: {"examples": n, "failures": 0, "worst": worst} for d, n in dtypes.items()},
            "seconds": seconds,
        },
    }


def failure(example, excess=2.5, prop=None):
    record = {
        "example": example,
        "dtype": "float64",
        "case": f"Linear(1→1), float64, seed {example}",
        "error": "AssertionError",
        "excess": excess,
        "comparison": "grad of 'w'",
        "message": "grad differs\nmore",
    }
    return {**record, "property": prop} if prop else record


def chunk(seed, tests):
    return {
        "seed": seed,
        "examples": 100,
        "window_examples": 10,
        "torch": "2.x",
        "hypothesis": "6.x",
        "date": "d",
        "seconds": 9.0,
        "returncode": 0,
        "status": "ok",
        "command": "pytest …",
        "tests": tests,
    }


CHUNKS = [
    chunk(
        1,
        [
            soaked("tests/test_a.py::t1", "a", 100, {"float64": 60, "float32": 40}, worst=0.25),
            soaked("tests/test_a.py::t2", "a", 100, {"float64": 100}, worst=0.5, failures=[failure(3), failure(9)]),
            soaked("tests/test_distributed.py::w", "distributed", 1200, {"float64": 1200}, worst=0.1),
            {
                "nodeid": "tests/test_a.py::plain",
                "when": "call",
                "outcome": "failed",
                "message": "plain broke",
                "soak": {"family": "a", "given": False},
            },
        ],
    ),
    chunk(
        2,
        [
            soaked("tests/test_a.py::t1", "a", 100, {"float64": 50, "float32": 50}, worst=0.75),
            soaked("tests/test_distributed.py::w", "distributed", 1200, {"float64": 1200}, worst=0.2),
        ],
    ),
    chunk(2, [soaked("tests/test_a.py::t1", "a", 100, {"float64": 50, "float32": 50}, worst=0.75)]),
]


def test_chunks_aggregate_per_family_with_dtypes_failures_the_worst_excess_and_the_target():
    report = reliability.aggregate(CHUNKS, "python -m tools.reliability --soak")
    rows = {row["family"]: row for row in report["families"]}
    a, distributed = rows["a"], rows["distributed"]
    assert report["duplicates_left_out"] == 1, "the same test under the same seed draws the same examples: counted once"
    assert a["examples"] == 300 and a["dtypes"]["float64"]["examples"] == 210 and a["dtypes"]["float32"]["examples"] == 90
    assert a["failing_examples"] == 2 and a["tests"] == 2 and a["examples_per_second"] == 100.0
    assert a["worst"] == 0.75 and a["where"] == {
        "test": "tests/test_a.py::t1",
        "seed": "2",
        "comparison": "grad of 'w'",
        "case": "case of tests/test_a.py::t1",
    }
    assert not a["target_met"] and "float32 90" in a["short_of_target"]
    assert distributed["unit"] == "windows" and distributed["examples"] == 2400 and distributed["target_met"]
    assert report["examples"] == 2700 and report["failing_examples"] == 2
    assert [f["example"] for f in report["failures"]] == [3, 9]
    assert report["failures"][0]["reproduce"] == (
        "pytest -p tools.soak_plugin --soak-examples=100 --timeout=0 'tests/test_a.py::t2' --hypothesis-seed=1"
    )
    assert [o["test"] for o in report["other_failures"]] == ["tests/test_a.py::plain"]
    pinned = reliability.aggregate([*CHUNKS, {**CHUNKS[-1], "dtype": "float16"}])
    assert pinned["duplicates_left_out"] == 1 and pinned["examples"] == 2800, "a dtype pin draws other examples"


def test_each_family_counts_its_examples_and_worst_excess_per_commit_oldest_first():
    old = {**CHUNKS[0], "commit": "aaa1111", "date": "2026-01-01T00:00:00+00:00"}
    new = [{**c, "commit": "bbb2222", "date": "2026-02-01T00:00:00+00:00"} for c in CHUNKS[1:]]
    report = reliability.aggregate([*new, old])
    rows = {row["family"]: row for row in report["families"]}
    assert rows["a"]["commits"] == {"aaa1111": {"examples": 200, "worst": 0.5}, "bbb2222": {"examples": 100, "worst": 0.75}}
    assert list(rows["distributed"]["commits"]) == ["aaa1111", "bbb2222"]
    text = reliability.render_soak_markdown(report)
    assert "- **a**: aaa1111 200 (worst 0.5) · bbb2222 100 (worst 0.75)" in text
    assert "seeds 1, 2;" in text and "100 examples per @given test per chunk" in text
    assert "## Examples per commit" not in reliability.render_soak_markdown(reliability.aggregate(CHUNKS)), (
        "one commit: no section"
    )


def test_seeds_sort_as_numbers():
    assert sorted([100, "10", 2, "x", 0], key=reliability.seed_order) == [0, 2, "10", 100, "x"]


def test_the_soak_report_has_a_row_per_family_and_lists_each_failure_with_its_case_and_reproduce_command():
    text = reliability.render_soak_markdown(reliability.aggregate(CHUNKS, "python -m tools.reliability --soak"))
    assert "**2,700 examples, 2 false failures**" in text
    assert (
        "| a | 2 | 300 | float32 90 · float64 210 | **2** | 0.75 | — | — | 100.0 | ✗ (float32 90, float64 210 < 20,000) |" in text
    )
    assert "| distributed | 1 | 2,400 windows | float64 2,400 | 0 | 0.2 | — | — | 1200.0 | ✓ |" in text
    assert "  - case: Linear(1→1), float64, seed 9" in text and "error ÷ tolerance 2.5" in text
    assert (
        "reproduce: `pytest -p tools.soak_plugin --soak-examples=100 --timeout=0 'tests/test_a.py::t2' --hypothesis-seed=1`"
        in text
    )
    assert "`tests/test_a.py::plain` (call, seed 1): plain broke" in text
    limited = reliability.render_soak_markdown(reliability.aggregate(CHUNKS), list_limit=1)
    assert "seed 9" not in limited and "… 1 more failures of `tests/test_a.py::t2`" in limited


def test_a_saved_chunk_is_skipped_the_others_run_and_every_chunk_file_is_aggregated(tmp_path, monkeypatch, capsys):
    ran = []

    def run_chunk(seed, files, *, examples, window_examples, timeout, dtype=None, targeted=False):
        ran.append(
            (seed, tuple(files), examples, window_examples) + ((dtype,) if dtype else ()) + (("targeted",) if targeted else ())
        )
        return chunk(seed, [soaked("tests/test_tutorial.py::t", "tutorial", examples, {"n/a": examples})])

    monkeypatch.setattr(reliability, "run_chunk", run_chunk)
    (tmp_path / "soak").mkdir()
    (tmp_path / "soak" / "chunk-5-tutorial.json").write_text(json.dumps(CHUNKS[1]))
    argv = ["--soak", "--families", "tutorial", "--chunks", "2", "--start", "5", "--examples", "30", "--output", str(tmp_path)]
    assert reliability.main(argv) == 0
    assert ran == [(6, ("tests/test_tutorial.py",), 30, 3)]
    assert sorted(p.name for p in (tmp_path / "soak").iterdir()) == ["chunk-5-tutorial.json", "chunk-6-tutorial.json"]
    report = json.loads((tmp_path / "soak.json").read_text())
    assert {r["family"] for r in report["families"]} == {"a", "distributed", "tutorial"}
    assert report["command"].endswith("--examples 30 --output " + str(tmp_path))
    assert "| tutorial | 1 | 30 |" in (tmp_path / "soak.md").read_text()
    assert reliability.main(["--render", "--output", str(tmp_path)]) == 0 and len(ran) == 1
    assert reliability.main([*argv, "--dtype", "float16"]) == 0, "a dtype pin is a chunk of its own"
    assert ran[1:] == [(5, ("tests/test_tutorial.py",), 30, 3, "float16"), (6, ("tests/test_tutorial.py",), 30, 3, "float16")]
    assert (tmp_path / "soak" / "chunk-6-tutorial-float16.json").exists()
    assert reliability.main([*argv, "--targeted"]) == 0, "a targeted chunk is a chunk of its own"
    assert ran[3:] == [(5, ("tests/test_tutorial.py",), 30, 3, "targeted"), (6, ("tests/test_tutorial.py",), 30, 3, "targeted")]
    assert (tmp_path / "soak" / "chunk-6-tutorial-targeted.json").exists()
    with pytest.raises(SystemExit, match="unknown family"):
        reliability.main(["--soak", "--families", "no_such_family", "--output", str(tmp_path)])


def targeted(chunk_record):
    return {**chunk_record, "targeted": True}


TARGETED = [
    targeted(chunk(1, [soaked("tests/test_a.py::t1", "a", 400, {"float64": 400}, worst=0.9)])),
    targeted(chunk(2, [soaked("tests/test_a.py::t2", "a", 50, {"float64": 50}, worst=0.4, failures=[failure(7, 1.25)])])),
]


def test_targeted_chunks_count_apart_with_their_own_worst_and_the_same_seed_is_not_a_duplicate():
    report = reliability.aggregate([*CHUNKS, *TARGETED])
    rows = {row["family"]: row for row in report["families"]}
    a = rows["a"]
    assert a["examples"] == 300 and a["targeted_examples"] == 450, "targeted examples do not count toward the target"
    assert a["worst"] == 0.75 and a["worst_targeted"] == 0.9
    assert a["where_targeted"]["test"] == "tests/test_a.py::t1" and a["where_targeted"]["seed"] == "1"
    assert report["duplicates_left_out"] == 1, "a targeted run under a sampled run's seed draws other examples"
    assert a["failing_examples"] == 3 and report["targeted_examples"] == 450
    (found,) = [f for f in report["failures"] if f.get("targeted")]
    assert (
        found["reproduce"]
        == "pytest -p tools.soak_plugin --soak-examples=100 --soak-targeted --timeout=0 'tests/test_a.py::t2' --hypothesis-seed=2"
    )
    assert rows["distributed"]["targeted_examples"] == 0 and rows["distributed"]["worst_targeted"] is None
    only = {r["family"]: r for r in reliability.aggregate(TARGETED)["families"]}["a"]
    assert (only["target_met"], only["short_of_target"]) == (False, "no sampled examples")


def test_the_soak_report_puts_each_familys_sampled_and_targeted_worst_side_by_side():
    text = reliability.render_soak_markdown(reliability.aggregate([*CHUNKS, *TARGETED]))
    assert "| worst error ÷ tolerance, sampled | targeted examples | worst, targeted |" in text
    assert "| a | 2 | 300 | float32 90 · float64 210 | **3** | 0.75 | 450 | 0.9 | 150.0 |" in text
    assert "| distributed | 1 | 2,400 windows | float64 2,400 | 0 | 0.2 | — | — |" in text
    assert "and **450 targeted examples** (`--targeted`)" in text
    assert "- **a** (targeted) 0.9: grad of 'w' in `t1` (seed 1)" in text
    assert "- **a** (targeted) `t2`, seed 2, example 7" in text


def test_a_targeted_chunk_runs_the_plugin_with_its_target_phase_and_files_apart(tmp_path):
    args = reliability.soak_pytest_args(tmp_path / "r.json", 30, 3, targeted=True)
    assert "--soak-targeted" in args and "--soak-targeted" not in reliability.soak_pytest_args(tmp_path / "r.json", 30, 3)
    assert "--timeout=0" in args  # a soaked test runs thousands of examples: pytest-timeout's 600 s backstop would cut it
    assert reliability.chunk_path(tmp_path, 4, ["a"], "float16", targeted=True).name == "chunk-4-a-float16-targeted.json"


def test_a_long_family_list_names_its_chunk_file_by_a_digest_that_fits_a_file_name(tmp_path):
    many = sorted(reliability.soak_files())
    name = reliability.chunk_path(tmp_path, 0, many, targeted=True).name
    assert name.startswith(f"chunk-0-{len(many)}-families-") and name.endswith("-targeted.json") and len(name) < 100
    assert name != reliability.chunk_path(tmp_path, 0, many[1:], targeted=True).name


def test_the_soak_runs_the_property_modules_and_the_recipe_soak_but_no_tooling_tests():
    files = reliability.soak_files()
    assert files["correct_recipe"] == "tools/soak_recipes.py"
    assert files["backward_accumulates"] == "tests/test_backward_accumulates.py" and "distributed" in files
    assert not {"tools", "matrix", "gate_commands", "recipe_plugin", "soak"} & set(files)
    assert not any(path.startswith("tests/meta") for path in files.values())


def test_a_finished_seed_is_kept_and_a_later_run_resumes_with_the_others(tmp_path, monkeypatch):
    ran = []

    def run_seed(seed, *, profile, with_meta, timeout):
        ran.append(seed)
        return {"seed": seed, "passed": True, "status": "pass", "tests": 1, "examples": 3, "seconds": 1.0, "failures": []}

    monkeypatch.setattr(reliability, "run_seed", run_seed)
    argv = ["--seeds", "2", "--start", "4", "--output", str(tmp_path)]
    assert reliability.main(argv) == 0 and sorted(ran) == [4, 5]  # seeds run side by side: any order
    assert sorted(p.name for p in (tmp_path / "reliability").iterdir()) == ["seed-thorough-4.json", "seed-thorough-5.json"]
    assert reliability.main(["--seeds", "3", "--start", "4", "--output", str(tmp_path)]) == 0 and sorted(ran[2:]) == [6]
    text = (tmp_path / "reliability.md").read_text()
    assert "**3/3 seeds passed**" in text and "--seeds 3 --start 4" in text
    assert reliability.main([*argv, "--fresh"]) == 0 and sorted(ran[3:]) == [4, 5]


TARGETED_PROPERTY = """
from hypothesis import Phase, given, settings, strategies as st


@given(x=st.integers(0, 9))
def test_runs_with_the_target_phase(x):
    assert Phase.target in settings.default.phases
"""


def test_the_plugin_adds_the_target_phase_only_when_asked_and_records_the_mode(pytester):
    pytester.makepyfile(test_targeted=TARGETED_PROPERTY)
    record = pytester.path / "soak.json"
    targeted = pytester.runpytest_inprocess(
        "-p", "tools.soak_plugin", "--soak-targeted", "--soak-examples=5", f"--soak-record={record}", "-p", "no:cacheprovider"
    )
    targeted.stdout.fnmatch_lines(["*test_runs_with_the_target_phase: * examples, 0 failing*"])
    assert json.loads(record.read_text())["targeted"] is True
    sampled = pytester.runpytest_inprocess("-p", "tools.soak_plugin", "--soak-examples=5", "-p", "no:cacheprovider")
    sampled.stdout.fnmatch_lines(["*test_runs_with_the_target_phase: * examples, 5 failing*"])


def test_targeting_reports_each_examples_largest_finite_ratio_once_and_nothing_outside_a_test(monkeypatch):
    import hypothesis
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from properties.compare import Tolerance, assert_tensor_close, targeting

    reported = []
    monkeypatch.setattr(hypothesis, "target", lambda value, *, label: reported.append((label, value)))

    def compare(difference):
        assert_tensor_close(torch.tensor([1.0 + difference]), torch.tensor([1.0]), name="x", tolerance=Tolerance(0.0, 1.0, "r"))

    largest = []

    @settings(max_examples=5, database=None, derandomize=True)
    @given(n=st.integers(1, 4))
    def prop(n):
        largest.append((n - 1) / 8)
        with targeting("prop"):
            for k in range(n):
                compare(k / 8)

    prop()
    assert largest and reported == [("prop", value) for value in largest], "one report per example: its largest ratio"
    reported.clear()
    with targeting("plain"):
        compare(0.5)
    assert reported == [], "outside a Hypothesis test nothing is reported"
