"""Benchmark: examples per second per family, Hypothesis' overhead, suite wall time, cost per example.

    python -m tools.bench                      # everything; writes reports/bench.json (and .md, .png)
    python -m tools.bench --skip-suite-timing  # leave out the two whole-suite runs
    python -m tools.bench --plot               # only draw reports/bench.png from reports/bench.json

Four measurements:
  throughput   the suite without tests/meta, run once by tools.audit_plugin: examples run and
               seconds per test, summed per family (test module) into examples per second
  replay       in that same run, each passing test's body is called again on the examples it drew,
               without Hypothesis; replay ratio = Hypothesis run seconds / plain replay seconds
  suite        wall time of the default suite (tests/meta included) with `-n 0` and with `-n auto`, and
               where it goes, phase by phase per worker (tools.timeline_plugin): start-up,
               collection, fixture set-up, test calls, teardown, and the wait at the end
  scaling      seconds per example of one check (check_backward_sums by default) as the number of
               micro-batches k and the model width grow, measured in this process without Hypothesis
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Optional

from tools.audit import REPORTS, ROOT, require_clone, run_pytest

AIMS = {"replay_ratio": 1.3, "suite_seconds_n_auto": 60.0, "speedup": 1.8}
K_VALUES = (1, 2, 4, 8, 16, 32)
WIDTHS = (2, 8, 32, 128, 256)
"""Up to the widest layer the strategies draw (model_specs' large_features): 256×256 = 65,536 weights."""
ROWS = (1, 4, 16, 64)
"""Rows per micro-batch, up to the largest the strategies draw (batch_splits' large_size)."""


def family(nodeid: str) -> str:
    """'backward_accumulates' from 'tests/test_backward_accumulates.py::test_…'."""
    stem = Path(nodeid.split("::")[0]).stem
    return stem[len("test_") :] if stem.startswith("test_") else stem


def ratio(numerator: float, denominator: float) -> Optional[float]:
    return round(numerator / denominator, 3) if denominator > 0 else None


def first_run_seconds(test: dict) -> float:
    """Seconds of the test's first Hypothesis run in the process (the one a suite run pays)."""
    return test["cold_seconds"] if test.get("cold_seconds") is not None else test["hypothesis_seconds"]


def families(tests: list[dict]) -> list[dict]:
    """Per family: tests, examples, Hypothesis seconds, examples per second, replay seconds and ratio."""
    grouped: dict[str, list[dict]] = defaultdict(list)
    for test in tests:
        if test.get("examples") is not None and test["when"] == "call":
            grouped[family(test["nodeid"])].append(test)
    rows = []
    for name, members in sorted(grouped.items()):
        examples = sum(t["examples"] for t in members)
        large = sum(t.get("large_examples") or 0 for t in members)
        seconds = sum(first_run_seconds(t) for t in members)
        replayed = [t for t in members if t.get("replay_seconds") is not None]
        warm = sum(t["hypothesis_seconds"] for t in replayed)
        replay = sum(t["replay_seconds"] for t in replayed)
        rows.append(
            {
                "family": name,
                "tests": len(members),
                "examples": examples,
                "large_examples": large,
                "large_share": ratio(large, examples),
                "seconds": round(seconds, 3),
                "examples_per_second": ratio(examples, seconds),
                "warm_seconds": round(warm, 3) if replayed else None,
                "replay_seconds": round(replay, 3) if replayed else None,
                "replay_ratio": ratio(warm, replay) if replayed else None,
            }
        )
    return rows


def total_row(rows: list[dict]) -> dict:
    """The families added up (the ratio over replayed tests only)."""
    examples, seconds = sum(r["examples"] for r in rows), sum(r["seconds"] for r in rows)
    warm, replay = sum(r["warm_seconds"] or 0 for r in rows), sum(r["replay_seconds"] or 0 for r in rows)
    large = sum(r.get("large_examples") or 0 for r in rows)
    return {
        "family": "all",
        "tests": sum(r["tests"] for r in rows),
        "examples": examples,
        "large_examples": large,
        "large_share": ratio(large, examples),
        "seconds": round(seconds, 3),
        "examples_per_second": ratio(examples, seconds),
        "warm_seconds": round(warm, 3),
        "replay_seconds": round(replay, 3),
        "replay_ratio": ratio(warm, replay),
    }


def measure_throughput(profile: str, seed: Optional[str], timeout: float) -> dict:
    """One run of the suite without tests/meta, counting examples and replaying them without Hypothesis."""
    extra = ["--audit-replay", "--audit-no-deadline"]
    run = run_pytest(extra, profile=profile, seed=seed, xdist=False, timeout=timeout)
    failed = [t["nodeid"] for t in run.tests if t["outcome"] == "failed"]
    rows = families(run.tests)
    return {
        "seconds": round(run.seconds, 2),
        "returncode": run.returncode,
        "failed": failed,
        "families": rows,
        "all": total_row(rows) if rows else None,
    }


def time_suite(workers: str, profile: str, timeout: float) -> dict:
    """Wall seconds of the default suite (tests/meta included) with `-n workers`, as a user runs it, and its phases."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        record = Path(scratch) / "timeline.json"
        command = [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", workers, f"--hypothesis-profile={profile}"),
            *("-p", "tools.timeline_plugin", f"--timeline-record={record}"),
        ]
        started = time.time()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        ended = time.time()
        timeline = json.loads(record.read_text()) if record.exists() else None
    last = (done.stdout.strip().splitlines() or [""])[-1]
    summary = last.strip("= ")
    result = {"workers": workers, "seconds": round(ended - started, 2), "returncode": done.returncode, "summary": summary}
    if timeline is not None:
        result["phases"] = phases(timeline, started, ended)
        result["slowest_setups"] = slowest(timeline, "setup")
        result["slowest_calls"] = slowest(timeline, "call")
    return result


TRIED = (
    "Longest first under xdist (conftest.py SLOW_FIRST): the modules whose tests take seconds each (subprocess, compile, "
    "rank pool, framework) start first, so neither worker ends on a long test while the other idles.",
    "A recipe that raises on every example is recognised after max_examples runs instead of Hypothesis' rejection "
    "budget (`recipe_tests.raises_on_every_example`): `pytest --recipe` on one went from 38 s to 9 s.",
    "The rank pool forks its ranks from a forkserver that imports torch once, instead of three imports of torch per pool.",
    "The transformers Trainer's gc.collect() at every train(): objects alive before a framework run are frozen "
    "(gc.freeze()) while it runs (one Trainer example 0.25 s → 0.03 s).",
    "`--dist loadgroup` (the distributed modules carry xdist_group('distributed'), so one worker would start the only "
    "rank pool): 64.3 s against 63.1 s with the default `--dist load`, measured back to back: not adopted, the pool's "
    "set-up is 3–5 s of a worker's time and the calls themselves dominate.",
    "Not done: one rank pool shared by the xdist workers (each worker starts its own forkserver and three ranks); the "
    "pool serves one example at a time over pipes, so sharing it needs a broker and a lock.",
)
"""What was done against the fixed and per-worker costs, listed in the report beside the phases."""

PHASES = (
    ("start", "start-up: interpreter, torch and conftest imports (xdist: the controller, then the worker's own)"),
    ("collection", "collection"),
    ("scheduling", "from collected to the first test"),
    ("setup", "fixture set-up (rank pools, models)"),
    ("call", "test calls"),
    ("teardown", "teardown"),
    ("between", "between tests (reporting, scheduling)"),
    ("end", "after the worker's last test: waiting for the other worker, session end, exit"),
)


def phases(timeline: dict, started: float, ended: float) -> dict[str, dict[str, float]]:
    """Seconds per phase (PHASES) per worker ('main' with -n 0), from the timeline plugin's record; their sum is the wall."""
    by_worker: dict[str, list[dict]] = defaultdict(list)
    for report in timeline["reports"]:
        if report["start"] is not None and report["stop"] is not None:
            by_worker[report["worker"]].append(report)
    result = {}
    for worker, reports in sorted(by_worker.items()):
        first, last = min(r["start"] for r in reports), max(r["stop"] for r in reports)
        spent = {
            when: sum(r["stop"] - r["start"] for r in reports if r["when"] == when) for when in ("setup", "call", "teardown")
        }
        marks = timeline["workers"].get(worker) or {}
        ready = marks.get("ready") or timeline["session_start"] or started
        collected = marks.get("collected") or timeline["collected"] or ready
        row = {
            "start": ready - started,
            "collection": collected - ready,
            "scheduling": first - collected,
            **spent,
            "between": (last - first) - sum(spent.values()),
            "end": ended - last,
        }
        result[worker] = {name: round(max(value, 0.0), 2) for name, value in row.items()}
    return result


def slowest(timeline: dict, when: str, count: int = 5) -> list[dict]:
    """The `count` longest reports of one phase ('setup', 'call'): nodeid, worker, seconds."""
    rows = [
        {"nodeid": r["nodeid"], "worker": r["worker"], "seconds": round(r["stop"] - r["start"], 2)}
        for r in timeline["reports"]
        if r["when"] == when and r["start"] is not None and r["stop"] is not None
    ]
    return sorted(rows, key=lambda r: -r["seconds"])[:count]


def standing_in_the_way(serial: dict, parallel: dict) -> list[str]:
    """What keeps -n auto from dividing -n 0's wall by the workers, in seconds read off the two runs' phases."""
    one, many = serial.get("phases"), parallel.get("phases")
    if not one or not many or len(one) != 1:
        return []
    (alone,) = one.values()
    workers = len(many)
    work = {name: sum(row[name] for row in many.values()) for name in ("setup", "call", "teardown")}
    lines = []
    ideal = (alone["setup"] + alone["call"] + alone["teardown"]) / workers + alone["start"] + alone["collection"]
    lines.append(
        f"Ideal: -n 0's set-up + calls + teardown ({alone['setup'] + alone['call'] + alone['teardown']:.1f} s) shared by "
        f"{workers} workers, plus one start-up and collection ({alone['start'] + alone['collection']:.1f} s) = {ideal:.1f} s; "
        f"measured {parallel['seconds']:.1f} s."
    )
    grown = {name: work[name] - alone[name] for name in work}
    lines.append(
        f"The same tests take longer on the workers: set-up {alone['setup']:.1f} → {work['setup']:.1f} s, calls "
        f"{alone['call']:.1f} → {work['call']:.1f} s, teardown {alone['teardown']:.1f} → {work['teardown']:.1f} s in all "
        f"({sum(grown.values()):+.1f} s): {workers} busy workers on {os.cpu_count()} cores, each also driving its own "
        "rank pool's processes and torch's threads, so a core is shared."
    )
    start = max(row["start"] + row["collection"] + row["scheduling"] for row in many.values())
    lines.append(
        f"Fixed cost before a worker's first test: up to {start:.1f} s (-n 0: "
        f"{alone['start'] + alone['collection'] + alone['scheduling']:.1f} s): the controller starts, then each worker "
        "imports torch and the suite and collects every module again."
    )
    ends = [row["end"] for row in many.values()]
    lines.append(
        f"Imbalance at the end: the workers finished their last tests {max(ends) - min(ends):.1f} s apart "
        "(the longest test left for last decides it)."
    )
    return lines


def measure_suite(profile: str, timeout: float) -> dict:
    serial, parallel = time_suite("0", profile, timeout), time_suite("auto", profile, timeout)
    return {
        "cores": os.cpu_count(),
        "n0": serial,
        "n_auto": parallel,
        "speedup": ratio(serial["seconds"], parallel["seconds"]),
        "in_the_way": standing_in_the_way(serial, parallel),
    }


# --- scaling -------------------------------------------------------------------------------------


def load_check(spec: str) -> Callable:
    """The check MODULE:FUNCTION (it takes a Case)."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def seconds_per_call(call: Callable[[], None], repeats: int, budget: float = 0.05) -> float:
    """Median over `repeats` of the mean time of enough calls to fill `budget` seconds (after one warm-up)."""
    call()
    start = time.perf_counter()
    call()
    once = max(time.perf_counter() - start, 1e-6)
    inner = max(1, int(budget / once))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            call()
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


def slope(xs: list[float], ys: list[float]) -> Optional[float]:
    """Least-squares exponent a in y ∝ x^a over the upper half of the points (the asymptotic growth)."""
    points = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0][len(xs) // 2 - 1 :]
    if len(points) < 2:
        return None
    mx, my = statistics.fmean(p[0] for p in points), statistics.fmean(p[1] for p in points)
    den = sum((p[0] - mx) ** 2 for p in points)
    return round(sum((p[0] - mx) * (p[1] - my) for p in points) / den, 2) if den else None


def measure_scaling(check_spec: str, repeats: int, k_values=K_VALUES, widths=WIDTHS, rows=ROWS) -> dict:
    """Seconds per example as k grows (MLP 4→4→4, 2 rows each), as the width grows (k = 4) and as the rows grow (k = 5)."""
    from dataclasses import replace

    import torch

    from properties.case import Case
    from properties.models import ModelSpec

    check = load_check(check_spec)

    def case(width: int, k: int) -> Case:
        return Case(ModelSpec("mlp", width, width, hidden=width), sizes=(2,) * k, dtype=torch.float64, seed=0)

    by_k = [{"k": k, "ms": round(1e3 * seconds_per_call(lambda k=k: check(case(4, k)), repeats), 4)} for k in k_values]
    by_width = []
    for width in widths:
        parameters = sum(p.numel() for p in case(width, 1).build_model().parameters())
        ms = 1e3 * seconds_per_call(lambda width=width: check(case(width, 4)), repeats)
        by_width.append({"width": width, "largest_tensor": width * width, "parameters": parameters, "ms": round(ms, 4)})
    by_rows = []
    for m in rows:
        ms = 1e3 * seconds_per_call(lambda m=m: check(replace(case(4, 5), sizes=(m,) * 5)), repeats)
        by_rows.append({"rows": m, "n": 5 * m, "ms": round(ms, 4)})
    return {
        "check": check_spec,
        "by_micro_batches": by_k,
        "by_model_size": by_width,
        "by_rows": by_rows,
        "exponent_rows": slope([r["n"] for r in by_rows], [r["ms"] for r in by_rows]),
        "exponent_k": slope([r["k"] for r in by_k], [r["ms"] for r in by_k]),
        "exponent_parameters": slope([r["parameters"] for r in by_width], [r["ms"] for r in by_width]),
    }


def plot_scaling(scaling: dict, path: Path) -> Optional[str]:
    """A log-log PNG of both scaling tables, when matplotlib is installed; the reason when it is not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot (the tables hold the same numbers)"
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.loglog([r["k"] for r in scaling["by_micro_batches"]], [r["ms"] for r in scaling["by_micro_batches"]], "o-")
    left.set(xlabel="micro-batches k", ylabel="ms per example", title="MLP 4→4→4, 2 rows each")
    right.loglog([r["parameters"] for r in scaling["by_model_size"]], [r["ms"] for r in scaling["by_model_size"]], "o-")
    right.set(xlabel="parameters", ylabel="ms per example", title="MLP w→w→w, k = 4")
    figure.suptitle(scaling["check"])
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return None


# --- report --------------------------------------------------------------------------------------


def fmt(value, digits: int = 2) -> str:
    return "—" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))


def aim(value: Optional[float], target: float, below: bool = True) -> str:
    if value is None:
        return ""
    met = value <= target if below else value >= target
    return f" ({'meets' if met else 'misses'} the aim {'≤' if below else '≥'} {target})"


def render_markdown(report: dict) -> str:
    """The benchmark as markdown tables."""
    lines = [
        "# Benchmark",
        "",
        f"torch {report['torch']}, profile `{report['profile']}`, seed {report['seed']}, "
        f"{report['cores']} cores, load average {report['load_average']} at the start.",
        "",
    ]
    if report.get("throughput"):
        t = report["throughput"]
        lines += [
            "## Examples per second and Hypothesis' overhead",
            "",
            "| family | tests | examples | large end | first run s | examples/s | warm run s | plain replay s | replay ratio |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in t["families"] + ([t["all"]] if t["all"] else []):
            name = f"**{row['family']}**" if row["family"] == "all" else row["family"]
            share = row.get("large_share")
            large = f"{row.get('large_examples', 0)} ({share:.0%})" if share is not None else "—"
            lines.append(
                f"| {name} | {row['tests']} | {row['examples']} | {large} | {fmt(row['seconds'])} | "
                f"{fmt(row['examples_per_second'], 1)} | {fmt(row['warm_seconds'])} | "
                f"{fmt(row['replay_seconds'])} | "
                f"{fmt(row['replay_ratio'])} |"
            )
        total = t["all"]["replay_ratio"] if t["all"] else None
        lines += [
            "",
            "examples/s: examples over the seconds of each test's first run in the process, as a suite run "
            "pays them (torch builds some kernels, float16 ones notably, once per new shape).",
            "",
            "large end: examples drawn from the strategies' large share — a parameter tensor of ≥ 1,024 elements, "
            "a micro-batch of more than 3 rows, more than 8 layers or more than 4 steps "
            "(`tools.audit_plugin.from_the_large_end`).",
            "",
            f"Replay ratio {fmt(total)}{aim(total, AIMS['replay_ratio'])}: seconds of a second, warm "
            "Hypothesis run over seconds of calling the same test bodies on the examples it drew, "
            "without Hypothesis.",
        ]
        if t["failed"]:
            lines += ["", f"Failed during the run: {', '.join(t['failed'])}"]
        lines.append("")
    if report.get("suite"):
        s = report["suite"]
        lines += [
            "## Default suite wall time",
            "",
            "| workers | seconds | result |",
            "|---|---|---|",
            f"| -n 0 | {fmt(s['n0']['seconds'], 1)} | {s['n0']['summary']} |",
            f"| -n auto | {fmt(s['n_auto']['seconds'], 1)} | {s['n_auto']['summary']} |",
            "",
            f"-n auto{aim(s['n_auto']['seconds'], AIMS['suite_seconds_n_auto'])}; speed-up {fmt(s['speedup'])}"
            f"{aim(s['speedup'], AIMS['speedup'], below=False)} on {s['cores']} cores.",
            "",
        ]
        lines += phase_table(s)
    if report.get("tried"):
        lines += ["## What was tried", ""] + [f"- {line}" for line in report["tried"]] + [""]
    if report.get("scaling"):
        c = report["scaling"]
        lines += [f"## Cost per example (`{c['check']}`, no Hypothesis)", "", "| micro-batches k | ms per example |", "|---|---|"]
        lines += [f"| {r['k']} | {r['ms']:.3f} |" for r in c["by_micro_batches"]]
        lines += [
            "",
            f"Grows like k^{fmt(c['exponent_k'])} (fitted on the larger k).",
            "",
            "| width | largest tensor | parameters | ms per example (k = 4) |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {r['width']} | {r.get('largest_tensor', '—')} | {r['parameters']} | {r['ms']:.3f} |" for r in c["by_model_size"]
        ]
        lines += ["", f"Grows like parameters^{fmt(c['exponent_parameters'])} (fitted on the larger models).", ""]
        if c.get("by_rows"):
            lines += ["| rows per micro-batch | N (k = 5) | ms per example |", "|---|---|---|"]
            lines += [f"| {r['rows']} | {r['n']} | {r['ms']:.3f} |" for r in c["by_rows"]]
            lines += ["", f"Grows like N^{fmt(c['exponent_rows'])} (fitted on the larger N).", ""]
        if report.get("plot"):
            lines += [f"Plot: {report['plot']}", ""]
    for note in report.get("notes", []):
        lines += [f"Note: {note}", ""]
    return "\n".join(lines)


def phase_table(suite: dict) -> list[str]:
    """Seconds per phase: -n 0, then each -n auto worker; what stands in the way; the slowest set-ups and calls."""
    columns = [("-n 0", row) for row in (suite["n0"].get("phases") or {}).values()]
    columns += [(f"-n auto {worker}", row) for worker, row in sorted((suite["n_auto"].get("phases") or {}).items())]
    if not columns:
        return []
    lines = [
        "### Where the wall time goes, phase by phase",
        "",
        "| phase | " + " | ".join(name for name, _ in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for key, label in PHASES:
        lines.append(f"| {label} | " + " | ".join(f"{row.get(key, 0):.1f}" for _, row in columns) + " |")
    lines.append("| **wall** | " + " | ".join(f"**{sum(row.values()):.1f}**" for _, row in columns) + " |")
    lines += ["", "Read off `tools.timeline_plugin`'s record of each run (seconds).", ""]
    lines += [f"- {line}" for line in suite.get("in_the_way", [])]
    for key, title in (("slowest_setups", "Slowest set-ups"), ("slowest_calls", "Slowest calls")):
        rows = suite["n_auto"].get(key) or []
        if rows:
            lines += [
                "",
                f"{title} under -n auto: " + "; ".join(f"`{r['nodeid']}` {r['seconds']:.1f} s ({r['worker']})" for r in rows),
            ]
    return lines + [""]


def relative(path: Path) -> str:
    """`path` relative to the repository root when it lies inside it."""
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else resolved)


def redraw(directory: Path) -> int:
    """Draw bench.png from the bench.json in `directory` and note it in bench.json and bench.md."""
    report = json.loads((directory / "bench.json").read_text())
    plot = directory / "bench.png"
    why_not = plot_scaling(report["scaling"], plot) if report.get("scaling") else "bench.json has no scaling tables"
    if why_not:
        print(why_not)
        return 1
    report["plot"] = relative(plot)
    report["notes"] = [n for n in report.get("notes", []) if "matplotlib" not in n]
    (directory / "bench.json").write_text(json.dumps(report, indent=1) + "\n")
    (directory / "bench.md").write_text(render_markdown(report))
    print(f"wrote {plot}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="dev", help="Hypothesis profile (default: dev)")
    p.add_argument("--seed", default="0", help="--hypothesis-seed for the throughput run, or 'random' (default: 0)")
    p.add_argument("--skip-suite-timing", action="store_true", help="leave out the -n 0 / -n auto suite runs")
    p.add_argument("--skip-throughput", action="store_true", help="leave out the examples/s and replay run")
    p.add_argument("--skip-scaling", action="store_true", help="leave out the cost-per-example tables")
    p.add_argument(
        "--scaling-check",
        default="properties.invariants.backward:check_backward_sums",
        help="MODULE:FUNCTION taking a Case, timed for the scaling tables",
    )
    p.add_argument("--repeats", type=int, default=5, help="timing repeats per scaling point (median; default 5)")
    p.add_argument("--timeout", type=float, default=900, help="seconds allowed per suite run")
    p.add_argument("--output", type=Path, default=REPORTS, help="where bench.json, bench.md, bench.png go")
    p.add_argument(
        "--plot",
        action="store_true",
        help="measure nothing: draw bench.png from the bench.json already in --output (needs matplotlib)",
    )
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = parser().parse_args(argv)
    if args.plot:
        return redraw(args.output)
    require_clone("python -m tools.bench")

    import torch

    seed = None if args.seed == "random" else args.seed
    report: dict = {
        "torch": torch.__version__,
        "profile": args.profile,
        "seed": seed or "random",
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "aims": AIMS,
        "notes": [],
    }
    if not args.skip_throughput:
        report["throughput"] = measure_throughput(args.profile, seed, args.timeout)
    if not args.skip_suite_timing:
        report["suite"] = measure_suite(args.profile, args.timeout)
        report["tried"] = list(TRIED)
    if not args.skip_scaling:
        report["scaling"] = measure_scaling(args.scaling_check, args.repeats)
        plot = args.output / "bench.png"
        why_not = plot_scaling(report["scaling"], plot)
        report["plot"] = None if why_not else relative(plot)
        report["notes"] += [why_not] if why_not else []
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "bench.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.output / "bench.md").write_text(render_markdown(report))
    print(render_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
