"""Self-audit: run the suite once per bundled fault and report which tests catch it, after how many examples.

    python -m tools.audit                 # every mutant and every bundled buggy recipe
    python -m tools.audit --faults backward-overwrites-grad zero-grad-leaves-residue
    python -m tools.audit --list          # the faults it knows

Faults are discovered, not listed here: every `MUTANTS` tuple in the modules of properties/mutants/
and, when properties.recipes exists, its BUGGY_RECIPES, each run through `pytest --recipe
MODULE:FUNCTION` with the --recipe-* options it names (CORRECT_RECIPE runs as a control that must
pass, with no options and with each set of options a buggy recipe uses).

Each fault gets its own pytest subprocess over the suite without tests/meta (the meta tests
apply mutants themselves), with tools.audit_plugin applying the fault for the whole session
and counting the examples each test ran before its first failure; Hypothesis' deadline is off,
so that a slow example on a busy machine is never taken for a caught fault. A run with no fault
comes first: a test that fails there is reported and credited with nothing.

Each catch also says how far the failure lies above the tolerance: the error ÷ tolerance of the
failing comparison (the plugin reads the line properties.compare writes into the failure), or
"structural" for a failure that is no numeric comparison. A fault's margin is its strongest catch:
the largest error ÷ tolerance among its catching tests.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import pkgutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from tools.audit_plugin import ratio_from_json, ratio_to_json


def require_clone(command: str) -> None:
    """Exit with a clear message unless ROOT is a clone of the repository (its tests/ are what the tools run)."""
    if not (ROOT / "tests").is_dir() or not (ROOT / "conftest.py").is_file():
        sys.exit(
            f"{command} runs the suite's own tests/ from a clone of the repository, and found none at {ROOT} "
            "(nor in the working directory): clone it, `python -m pip install -e .` there, and run it from the clone"
        )


def repository_root() -> Path:
    """The clone whose tests/ the tools run: this package's (editable install), else the working directory."""
    package_parent = Path(__file__).resolve().parents[1]
    for candidate in (package_parent, Path.cwd()):
        if (candidate / "tests").is_dir() and (candidate / "properties").is_dir():
            return candidate
    return package_parent


ROOT = repository_root()
REPORTS = ROOT / "reports"
SUITE_ARGS = (
    "tests",
    "--ignore=tests/meta",
    "-m",
    "not meta and not frameworks",
)  # frameworks: their own controls
CLOSE_TO_THE_BOUND = 10.0  # a best error ÷ tolerance below this is one loosening away from a miss


@dataclass(frozen=True)
class Fault:
    """One fault to inject: a mutant (by --audit-fault) or a recipe (by --recipe), or a control that must pass."""

    name: str
    kind: str
    description: str
    pytest_args: tuple[str, ...]
    expect_caught: bool = True

    @property
    def label(self) -> str:
        return self.name if self.expect_caught else f"{self.name} (control)"


def mutant_faults() -> list[Fault]:
    """Every Mutant in every module of properties.mutants, named MODULE:NAME for the plugin."""
    import properties.mutants as package

    faults = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for mutant in getattr(module, "MUTANTS", ()):
            spec = f"{info.name}:{mutant.name}"
            faults.append(Fault(mutant.name, f"mutant ({info.name})", mutant.description, (f"--audit-fault={spec}",)))
    return faults


def recipe_spec(recipe: Any) -> tuple[str, str, str]:
    """(name, 'MODULE:FUNCTION', description) of a bundled recipe, a function or an object holding one."""
    function = recipe
    for attribute in ("function", "recipe", "fn", "loop"):
        if not callable(function) or not hasattr(function, "__qualname__"):
            function = getattr(recipe, attribute, function)
    name = getattr(recipe, "name", None) or function.__name__
    doc = (function.__doc__ or "").strip().splitlines()[:1]
    description = getattr(recipe, "description", None) or (doc[0] if doc else getattr(recipe, "cause", ""))
    return name, f"{function.__module__}:{function.__qualname__}", description


COMMAND_LINE_OPTIONS = ("last_window", "dtype", "optimizers", "clip_norm", "scheduler", "scaler", "max_examples")
"""The check_recipe options `pytest --recipe` takes as --recipe-* flags (a model, loss or data object has none)."""


def recipe_flags(options: dict) -> tuple[str, ...]:
    """check_recipe keyword arguments as the plugin's --recipe-* options (clip_norm=0.1 → --recipe-clip-norm=0.1)."""
    flags = []
    for key, value in sorted(options.items()):
        flag = "--recipe-examples" if key == "max_examples" else "--recipe-" + key.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif value not in (False, None):
            flags.append(f"{flag}={','.join(map(str, value)) if isinstance(value, (tuple, list)) else value}")
    return tuple(flags)


def named_recipes(recipes: Any) -> list[tuple[Optional[str], Any]]:
    """(key, recipe) pairs from a dict, or (None, recipe) from any other iterable."""
    if isinstance(recipes, dict):
        return list(recipes.items())
    return [(None, recipe) for recipe in recipes]


def recipe_faults() -> tuple[list[Fault], str]:
    """The bundled buggy recipes, each with the options that expose it, and the correct recipe as a control.

    The correct recipe runs once with no options and once with each set of options a buggy recipe
    uses: it must pass every time.
    """
    try:
        recipes = importlib.import_module("properties.recipes")
    except ModuleNotFoundError as error:
        if error.name != "properties.recipes":
            raise
        return [], "properties.recipes does not exist yet: no recipe faults audited"
    faults, option_sets, skipped = [], [{}], []
    for key, recipe in named_recipes(getattr(recipes, "BUGGY_RECIPES", ())):
        name, spec, description = recipe_spec(recipe)
        options = dict(getattr(recipe, "options", None) or {})
        if set(options) - set(COMMAND_LINE_OPTIONS):
            skipped.append(f"recipe:{key or name} ({', '.join(sorted(set(options) - set(COMMAND_LINE_OPTIONS)))})")
            continue
        option_sets += [options] if options not in option_sets else []
        args = (f"--recipe={spec}", *recipe_flags(options))
        faults.append(Fault(f"recipe:{key or name}", "recipe", description, args))
    correct = getattr(recipes, "CORRECT_RECIPE", None)
    if correct is not None:
        for options in option_sets:
            dropping = options.get("last_window") == "drop"
            name, spec, description = recipe_spec(getattr(recipes, "CORRECT_WHEN_DROPPING", correct) if dropping else correct)
            flags = recipe_flags(options)
            label = f"recipe:{name}" + (f" {' '.join(flags)}" if flags else "")
            faults.append(Fault(label, "recipe", description, (f"--recipe={spec}", *flags), expect_caught=False))
    note = (
        "not audited through `pytest --recipe` (it takes no flag for a model, loss or data object; "
        f"tests/meta/test_recipe_controls.py rejects them): {', '.join(skipped)}"
        if skipped
        else ""
    )
    return faults, note


def discover() -> tuple[list[Fault], list[str]]:
    """Every fault this clone bundles, and notes on what could not be audited."""
    recipes, note = recipe_faults()
    return mutant_faults() + recipes, [note] if note else []


def select(faults: list[Fault], names: Optional[Iterable[str]]) -> list[Fault]:
    """The faults whose name (or MODULE:NAME) contains one of `names`; all when names is empty."""
    if not names:
        return faults
    wanted = list(names)
    chosen = [f for f in faults if any(n == f.name or n in f.name or n in " ".join(f.pytest_args) for n in wanted)]
    unknown = [n for n in wanted if not any(n == f.name or n in f.name or n in " ".join(f.pytest_args) for f in faults)]
    if unknown:
        raise SystemExit(f"unknown fault(s) {unknown}; `python -m tools.audit --list` shows the known ones")
    return chosen


# --- running -------------------------------------------------------------------------------------


@dataclass
class Run:
    """What one pytest subprocess gave: exit status, wall seconds, per-test records, output tail."""

    returncode: int
    seconds: float
    tests: list[dict] = field(default_factory=list)
    output: str = ""


def pytest_command(
    extra: Iterable[str], *, profile: str, seed: Optional[str], record: Path, xdist: bool, paths: Iterable[str] = SUITE_ARGS
) -> list[str]:
    """The pytest command for one audit run: the recording plugin, this profile and seed, no cache."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "--tb=no",
        "-p",
        "no:cacheprovider",
        "-p",
        "tools.audit_plugin",
        f"--audit-record={record}",
        f"--hypothesis-profile={profile}",
    ]
    command += [f"--hypothesis-seed={seed}"] if seed is not None else []
    command += ["-n", "auto"] if xdist else ["-p", "no:xdist"]
    return command + list(extra) + list(paths)


def pytest_environment() -> dict[str, str]:
    """This process's environment, with Hypothesis' observability coverage off before Python 3.12.

    The plugin counts a test's own searches through observability callbacks; before 3.12, Hypothesis
    would trace every line those searches run to report coverage (HYPOTHESIS_EXPERIMENTAL_OBSERVABILITY_NOCOVER
    is Hypothesis' documented switch; from 3.12 its tracing is cheap and the switch only warns).
    """
    environment = dict(os.environ)
    if sys.version_info < (3, 12):
        environment["HYPOTHESIS_EXPERIMENTAL_OBSERVABILITY_NOCOVER"] = "1"
    return environment


def run_pytest(
    extra: Iterable[str], *, profile: str, seed: Optional[str], xdist: bool, timeout: float, paths: Iterable[str] = SUITE_ARGS
) -> Run:
    """Run pytest in a subprocess from the repository root and read back the plugin's records."""
    with tempfile.TemporaryDirectory(prefix="audit-") as scratch:
        record = Path(scratch) / "record.json"
        command = pytest_command(extra, profile=profile, seed=seed, record=record, xdist=xdist, paths=paths)
        start = time.perf_counter()
        try:
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=pytest_environment())
            returncode, output = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired:
            returncode, output = -1, f"timed out after {timeout:.0f} s"
        seconds = time.perf_counter() - start
        tests = json.loads(record.read_text())["tests"] if record.exists() else []
    return Run(returncode, seconds, tests, output[-3000:])


def run_fault(
    fault: Optional[Fault], *, profile: str, seed: Optional[str], xdist: bool, timeout: float, paths: Iterable[str] = SUITE_ARGS
) -> Run:
    """The suite (or `paths`) under one fault (None: the baseline), the deadline off."""
    extra = ("--audit-no-deadline", *(fault.pytest_args if fault else ()))
    return run_pytest(extra, profile=profile, seed=seed, xdist=xdist, timeout=timeout, paths=paths)


# --- judging -------------------------------------------------------------------------------------


def failed_tests(run: Run) -> dict[str, dict]:
    """nodeid → record of its first failed phase, for every test with one (or an unexpected pass of an xfail)."""
    failed: dict[str, dict] = {}
    for test in run.tests:
        if test["outcome"] in ("failed", "xpassed"):
            failed.setdefault(test["nodeid"], test)
    return failed


def verdict(fault: Fault, run: Run, baseline_failures: set[str]) -> dict:
    """The audit row of one fault: caught or not, by which tests, after how many examples, in how long."""
    catchers = {nodeid: t for nodeid, t in failed_tests(run).items() if nodeid not in baseline_failures}
    broken = run.returncode not in (0, 1) and not catchers
    by = [
        {
            "test": nodeid,
            "examples": t.get("first_failure"),
            "message": t.get("message", ""),
            "error_over_tolerance": t.get("error_over_tolerance"),
            "bitwise": bool(t.get("bitwise")),
            "structural": t.get("error_over_tolerance") is None,
        }
        for nodeid, t in sorted(catchers.items(), key=lambda item: (item[1].get("first_failure") or 10**9, item[0]))
    ]
    counts = [b["examples"] for b in by if b["examples"] is not None]
    caught = bool(catchers)
    margin, bitwise = strongest_catch(by)
    return {
        "fault": fault.name,
        "kind": fault.kind,
        "description": fault.description,
        "expect_caught": fault.expect_caught,
        "caught": caught,
        "ok": (caught == fault.expect_caught) and not broken,
        "status": "error" if broken else ("caught" if caught else "missed"),
        "caught_by": by,
        "examples": min(counts) if counts else None,
        "margin": margin,
        "margin_bitwise": bitwise,
        "structural": caught and margin is None,
        "structural_tests": sum(b["structural"] for b in by),
        "seconds": round(run.seconds, 2),
        "returncode": run.returncode,
        "tests_run": sum(1 for t in run.tests if t["when"] == "call"),
        "output": run.output if broken else "",
    }


def strongest_catch(by: list[dict]) -> tuple[Optional[float | str], bool]:
    """The largest error ÷ tolerance among the catching tests ("inf" for ∞; None when every catch is structural),
    and whether it comes from a bitwise comparison."""
    numeric = [(ratio_from_json(b["error_over_tolerance"]), b["bitwise"]) for b in by if not b["structural"]]
    if not numeric:
        return None, False
    value, bitwise = max(numeric)
    return ratio_to_json(value), bitwise


def format_ratio(value: float) -> str:
    """3.2e+05, 2.5, 12: two significant figures."""
    return f"{value:.2g}"


def margin_cell(row: dict) -> str:
    """The error ÷ tolerance column: the strongest catch, '∞ (bitwise)', 'structural', or — when nothing failed."""
    if not row["caught"] or "margin" not in row:  # a report from before the column was measured
        return "—"
    margin = ratio_from_json(row["margin"])
    if margin is None:
        return "structural"
    if math.isinf(margin):
        text = "∞ (bitwise)" if row.get("margin_bitwise") else "∞"
    else:
        text = format_ratio(margin)
    return text + (" (also structural)" if row.get("structural_tests") else "")


def close_to_the_bound(rows: list[dict], bound: float = CLOSE_TO_THE_BOUND) -> list[str]:
    """Markdown lines naming the caught faults whose strongest catch lies less than `bound` × above its tolerance."""
    near = [
        r
        for r in rows
        if r["expect_caught"] and r["caught"] and r.get("margin") is not None and ratio_from_json(r["margin"]) < bound
    ]
    exposed = [r for r in near if not r.get("structural_tests")]
    covered = [r for r in near if r.get("structural_tests")]
    name = lambda r: f"`{r['fault']}` ({format_ratio(ratio_from_json(r['margin']))})"  # noqa: E731
    if not any("margin" in r for r in rows):  # a report from before the column was measured
        return []
    if not near:
        return [
            f"No caught fault is close to the bound: each lies at least {bound:g}× above its tolerance or is caught structurally."
        ]
    lines = []
    if exposed:
        lines.append(
            f"**Close to the bound** (best error ÷ tolerance < {bound:g}, so one loosening of the tolerance "
            f"away from being missed): {', '.join(map(name, exposed))}."
        )
    if covered:
        lines.append(
            f"Below {bound:g}× but also caught structurally, so a looser tolerance would not lose them: "
            f"{', '.join(map(name, covered))}."
        )
    return lines


def short_test(nodeid: str) -> str:
    """'test_name[param]' from 'tests/test_file.py::test_name[param]'."""
    return nodeid.split("::")[-1]


def caught_cell(row: dict) -> str:
    if row["status"] == "error":
        return "ERROR (see audit.json)"
    if not row["expect_caught"]:
        return "FALSE ALARM" if row["caught"] else "no (as it should)"
    return "yes" if row["caught"] else "**MISSED**"


def by_cell(row: dict, limit: int = 2) -> str:
    tests = [short_test(b["test"]) for b in row["caught_by"]]
    shown = ", ".join(f"`{t}`" for t in tests[:limit])
    return shown + (f" +{len(tests) - limit} more" if len(tests) > limit else "") if tests else "—"


def render_markdown(report: dict) -> str:
    """The audit as markdown: header, one row per fault, then the gaps."""
    rows = report["faults"]
    expected = [r for r in rows if r["expect_caught"]]
    caught = sum(r["caught"] for r in expected)
    how = "pytest-xdist -n auto" if report["xdist"] else f"{report['jobs']} fault(s) at a time"
    baseline = report["baseline"]
    state = "passed" if not baseline["failures"] else "FAILED: " + ", ".join(baseline["failures"])
    paths = tuple(report.get("paths") or SUITE_ARGS)
    scope = "tests/meta left out" if paths == SUITE_ARGS else "only " + " ".join(paths)
    lines = [
        "# Self-audit",
        "",
        f"torch {report['torch']}, profile `{report['profile']}`, seed {report['seed']}, {how}; "
        f"{baseline['tests_run']} tests ({scope}); without a fault they {state} "
        f"in {baseline['seconds']:.1f} s.",
        "",
        f"**{caught}/{len(expected)} faults caught** in {report['seconds']:.0f} s.",
        "",
        "| fault | kind | caught? | by | examples | error ÷ tolerance | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        examples = "—" if row["examples"] is None else str(row["examples"])
        lines.append(
            f"| `{row['fault']}` | {row['kind']} | {caught_cell(row)} | {by_cell(row)} | {examples} "
            f"| {margin_cell(row)} | {row['seconds']:.1f} |"
        )
    lines += [
        "",
        "*examples*: the fewest examples any catching test ran up to and including its first failure.",
        "",
        "*error ÷ tolerance*: the strongest catch, the largest max |actual − expected| / (atol + rtol·|expected|) "
        "of the failing comparison among the catching tests; *structural*: every catch failed without a numeric "
        "comparison (a missing .grad, a wrong count, an exception), which no tolerance would let through.",
        "",
        *close_to_the_bound(rows),
    ]
    gaps = [r for r in rows if not r["ok"]]
    if gaps:
        lines += ["", "## Gaps", ""]
        for row in gaps:
            why = {"missed": "no test failed", "error": "the run itself broke"}.get(row["status"], "")
            if not row["expect_caught"]:
                why = "a correct recipe was rejected"
            lines.append(f"- `{row['fault']}` ({row['description']}): {why}.")
    for note in report.get("notes", []):
        lines += ["", f"Note: {note}"]
    return "\n".join(lines) + "\n"


def audit(
    faults: list[Fault],
    *,
    profile: str,
    seed: Optional[str],
    jobs: int,
    xdist: bool,
    timeout: float,
    progress: Callable[[str], None] = lambda line: None,
    paths: Iterable[str] = SUITE_ARGS,
) -> dict:
    """Run the baseline, then every fault (`jobs` at a time), over the suite or `paths`, and assemble the report."""
    import torch

    paths = tuple(paths)
    start = time.perf_counter()
    baseline = run_fault(None, profile=profile, seed=seed, xdist=xdist, timeout=timeout, paths=paths)
    baseline_failures = set(failed_tests(baseline))
    progress(f"baseline: {baseline.returncode=} in {baseline.seconds:.1f} s; failing: {sorted(baseline_failures)}")

    def one(fault: Fault) -> dict:
        run = run_fault(fault, profile=profile, seed=seed, xdist=xdist, timeout=timeout, paths=paths)
        row = verdict(fault, run, baseline_failures)
        progress(f"{fault.label}: {caught_cell(row).strip('*')} ({row['seconds']:.1f} s)")
        return row

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        rows = list(pool.map(one, faults))
    return {
        "torch": torch.__version__,
        "profile": profile,
        "seed": seed if seed is not None else "random",
        "xdist": xdist,
        "jobs": jobs,
        "seconds": round(time.perf_counter() - start, 1),
        "baseline": {
            "returncode": baseline.returncode,
            "seconds": round(baseline.seconds, 2),
            "tests_run": sum(1 for t in baseline.tests if t["when"] == "call"),
            "failures": sorted(baseline_failures),
            "output": baseline.output if baseline.returncode not in (0, 1) or baseline_failures else "",
        },
        "paths": list(paths),
        "faults": rows,
        "caught": sum(r["caught"] for r in rows if r["expect_caught"]),
        "expected": sum(r["expect_caught"] for r in rows),
        "gaps": [r["fault"] for r in rows if not r["ok"]],
    }


def write_reports(report: dict, directory: Path, stem: str = "audit") -> None:
    """reports/<stem>.json and reports/<stem>.md."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    (directory / f"{stem}.md").write_text(render_markdown(report))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.audit", description=__doc__.splitlines()[0])
    p.add_argument("--faults", nargs="+", metavar="NAME", help="only these faults (a name or part of one)")
    p.add_argument("--profile", default="dev", help="Hypothesis profile (default: dev)")
    p.add_argument("--seed", default="0", help="--hypothesis-seed for every run, or 'random' (default: 0)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="faults run at the same time (default: cores)")
    p.add_argument("--xdist", action="store_true", help="run each fault with pytest -n auto instead (then --jobs 1)")
    p.add_argument("--timeout", type=float, default=600, help="seconds allowed per run (default: 600)")
    p.add_argument(
        "--paths",
        nargs="+",
        metavar="PATH",
        help="run only these test paths under each fault (default: the suite, no tests/meta)",
    )
    p.add_argument("--output", type=Path, default=REPORTS, help="where audit.json and audit.md go (default: reports/)")
    p.add_argument("--list", action="store_true", help="list the faults and exit")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = parser().parse_args(argv)
    require_clone("python -m tools.audit")
    faults, notes = discover()
    if args.list:
        for fault in faults:
            print(f"{fault.label:45} {fault.kind:22} {fault.description}")
        for note in notes:
            print(f"note: {note}")
        return 0
    chosen = select(faults, args.faults)
    seed = None if args.seed == "random" else args.seed
    jobs = 1 if args.xdist else args.jobs
    progress = (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    paths = tuple(args.paths) if args.paths else SUITE_ARGS
    report = audit(
        chosen, profile=args.profile, seed=seed, jobs=jobs, xdist=args.xdist, timeout=args.timeout, progress=progress, paths=paths
    )
    report["notes"] = notes
    write_reports(report, args.output)
    print(render_markdown(report))
    return 0 if not report["gaps"] and not report["baseline"]["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
