"""No false failures: run the suite under many distinct --hypothesis-seed values and report pass or fail per seed.

    python -m tools.reliability --seeds 20                 # thorough profile, seeds 0…19
    python -m tools.reliability --seeds 5 --start 1000 --profile ci --with-meta

Each seed is one pytest subprocess (by default without tests/meta, whose negative controls are
derandomized and so do not depend on the seed) with the example database off, so that no seed
replays another's examples. A failing seed lists its failing tests and the command that
reproduces each. Each finished seed is kept as reports/reliability/seed-<profile>-<seed>.json and
not run again (unless --fresh), so a run can be stopped and resumed; the seeds asked for are then
written to reports/reliability.json and reports/reliability.md.

Soak: very many examples per property family, every failure recorded, and how close a sound
torch comes to failing (the largest error ÷ tolerance of any comparison that passed):

    python -m tools.reliability --soak                     # 1 chunk: 2000 examples per @given test
    python -m tools.reliability --soak --chunks 10 --start 0 --jobs 2
    python -m tools.reliability --soak --families backward_accumulates precision --examples 500
    python -m tools.reliability --soak --families bounds --dtype float16   # low precision only in float16
    python -m tools.reliability --soak --targeted --examples 300   # search toward the bounds (Phase.target)
    python -m tools.reliability --soak --render            # only re-aggregate the chunks already run

Chunk i is one pytest subprocess (-n 0) with --hypothesis-seed=START+i over the default suite's
property modules (no tests/meta, no tooling tests) and tools/soak_recipes.py (the correct
recipe under each option set), run under tools.soak_plugin: every @given test draws
--examples examples (--distributed-examples for the distributed family, where an example is one
window), and a failing example is recorded and the test goes on; tests without @given run once
per chunk, as usual, and one that fails is listed apart. Each finished chunk is saved as
reports/soak/chunk-<seed>.json (chunk-<seed>-<family+family>.json with --families, -<dtype> added
with --dtype) and skipped by later invocations (unless --fresh), so a soak can be stopped and
resumed; a test run twice under one seed (and one --dtype) is counted once. --dtype NAME makes every
strategy that may draw a low-precision dtype draw only NAME, so that a per-dtype target is met
without running the float64 examples again. --targeted adds Hypothesis' target phase: every comparison
reports its error ÷ tolerance as a target (properties.compare.targeting), so the search climbs toward
the bound where sampling only draws; such chunks are files of their own (-targeted) and counted apart.
Every chunk file present is then aggregated into reports/soak.json and
reports/soak.md: per family the examples (per dtype), false failures, the worst error ÷ tolerance
and where, examples per second and whether the target is met (≥ 20,000 examples per dtype;
≥ 2,000 windows for distributed), then every failure with its case and reproduce command.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Optional

from tools.audit import REPORTS, ROOT, SUITE_ARGS, failed_tests, require_clone, run_pytest
from tools.audit_plugin import ratio_from_json as ratio


def reproduce_command(nodeid: str, profile: str, seed: int) -> str:
    """The command that re-runs one test with this profile and seed."""
    return f"pytest '{nodeid}' --hypothesis-profile={profile} --hypothesis-seed={seed}"


def run_seed(seed: int, *, profile: str, with_meta: bool, timeout: float) -> dict:
    """One seed's run: pass or fail, counts, failing tests with their message and reproduce command."""
    paths = ("tests",) if with_meta else SUITE_ARGS
    run = run_pytest((), profile=profile, seed=str(seed), xdist=False, timeout=timeout, paths=paths)
    failures = failed_tests(run)
    broken = run.returncode not in (0, 1) and not failures
    return {
        "seed": seed,
        "passed": run.returncode == 0,
        "status": "error" if broken else ("pass" if run.returncode == 0 else "FAIL"),
        "tests": sum(1 for t in run.tests if t["when"] == "call"),
        "examples": sum(t.get("examples") or 0 for t in run.tests),
        "seconds": round(run.seconds, 1),
        "failures": [
            {"test": nodeid, "message": t.get("message", ""), "reproduce": reproduce_command(nodeid, profile, seed)}
            for nodeid, t in sorted(failures.items())
        ],
        "output": run.output if broken else "",
    }


def render_markdown(report: dict) -> str:
    """Pass/fail per seed, then every failure with its reproduce command."""
    rows = report["seeds"]
    passed = sum(r["passed"] for r in rows)
    lines = [
        "# Reliability: no false failures",
        "",
        f"torch {report['torch']}, profile `{report['profile']}`, {'with' if report['with_meta'] else 'without'} "
        f"tests/meta: **{passed}/{len(rows)} seeds passed** ({report.get('seed_seconds', report['seconds']):.0f} s "
        f"inside the seeds); last seed finished {report.get('finished') or '—'}"
        + (f", commit {', '.join(report['commits'])}" if report.get("commits") else "")
        + ".",
        "",
        f"Command: `python -m tools.reliability --seeds {len(rows)}"
        + (f" --start {rows[0]['seed']}" if rows and rows[0]["seed"] else "")
        + (f" --profile {report['profile']}" if report["profile"] != "thorough" else "")
        + (" --with-meta" if report["with_meta"] else "")
        + "` (a finished seed is kept in reports/reliability/ and not run again unless --fresh).",
        "",
        "| seed | result | tests | examples | seconds | commit | finished | failing tests |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        failing = ", ".join(f"`{f['test'].split('::')[-1]}`" for f in r["failures"]) or "—"
        finished = (r.get("finished") or "—")[:10]
        cells = [
            r["seed"],
            r["status"],
            r["tests"],
            r["examples"],
            f"{r['seconds']:.1f}",
            r.get("commit") or "—",
            finished,
            failing,
        ]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    failures = [f for r in rows for f in r["failures"]]
    if failures:
        lines += ["", "## Reproduce", ""]
        lines += [f"- {f['message'] or f['test']}\n  `{f['reproduce']}`" for f in failures]
    return "\n".join(lines) + "\n"


# --- soak ----------------------------------------------------------------------------------------

TOOLING_TESTS = ("test_recipe_plugin.py", "test_public_api.py")  # they run subprocesses
RECIPE_SOAK = "tools/soak_recipes.py"
SOAK_PROFILE = "dev"
EXAMPLE_TARGET = 20_000
WINDOW_TARGET = 2_000
TARGETED_AIM = 2_000
WINDOW_FAMILIES = ("distributed", "distributed_options", "fsdp", "pipeline")
"""Families whose examples are windows on a gloo rank pool: their target counts windows."""


def soak_files() -> dict[str, str]:
    """family → file of the soak: tests/test_*.py but the tooling tests (they run subprocesses), and the recipe soak."""
    from tools.bench import family
    from tools.soak_recipes import SOAK_FAMILY

    files = {
        family(path.name): f"tests/{path.name}"
        for path in sorted((ROOT / "tests").glob("test_*.py"))
        if path.name not in TOOLING_TESTS
    }
    files[SOAK_FAMILY] = RECIPE_SOAK
    return files


def select_families(files: dict[str, str], names: Optional[Iterable[str]]) -> dict[str, str]:
    """The files of the named families (a module name, with or without 'test_' and '.py'); all when names is empty."""
    if not names:
        return files
    wanted = [Path(n).stem.removeprefix("test_") for n in names]
    unknown = [n for n in wanted if n not in files]
    if unknown:
        raise SystemExit(f"unknown famil{'y' if len(unknown) == 1 else 'ies'} {unknown}; known: {', '.join(files)}")
    return {name: files[name] for name in files if name in wanted}


def chunk_path(
    directory: Path, seed: int, families: Optional[list[str]], dtype: Optional[str] = None, targeted: bool = False
) -> Path:
    """reports/soak/chunk-<seed>.json; with --families, chunk-<seed>-<family+family>.json (a list too long for a file
    name: <N>-families-<digest>); with --dtype, -<dtype> after; with --targeted, -targeted last."""
    suffix = (
        (f"-{families_name(families)}" if families else "") + (f"-{dtype}" if dtype else "") + ("-targeted" if targeted else "")
    )
    return directory / "soak" / f"chunk-{seed}{suffix}.json"


FAMILIES_NAME_LIMIT = 120


def families_name(families: list[str]) -> str:
    """family+family for a chunk's file name; beyond FAMILIES_NAME_LIMIT characters, <N>-families-<digest of the list>."""
    import hashlib

    joined = "+".join(families)
    if len(joined) <= FAMILIES_NAME_LIMIT:
        return joined
    return f"{len(families)}-families-{hashlib.sha256(joined.encode()).hexdigest()[:12]}"


def soak_pytest_args(
    record: Path, examples: int, window_examples: int, dtype: Optional[str] = None, targeted: bool = False
) -> tuple[str, ...]:
    """The pytest options of one chunk beyond run_pytest's own: the soak plugin, its example counts, dtype pin and targeting."""
    return (
        "-p",
        "tools.soak_plugin",
        f"--soak-record={record}",
        f"--soak-examples={examples}",
        *((f"--soak-dtype={dtype}",) if dtype else ()),
        *(("--soak-targeted",) if targeted else ()),
        *(f"--soak-examples-for={family}={window_examples}" for family in WINDOW_FAMILIES),
        "-m",
        "not meta and not xfail",  # a registered deviation fails by design: the soak is about sound behaviour
        "--timeout=0",  # pytest-timeout's per-test backstop: a soaked test draws thousands of examples (the chunk has its own)
    )


def soak_reproduce(nodeid: str, seed, examples: Optional[int], dtype: Optional[str] = None, targeted: bool = False) -> str:
    """The command that re-runs one test's soak: it draws the same examples and lists its failures in the summary."""
    count = f" --soak-examples={examples}" if examples else ""
    pin = f" --soak-dtype={dtype}" if dtype else ""
    target = " --soak-targeted" if targeted else ""
    return f"pytest -p tools.soak_plugin{count}{pin}{target} --timeout=0 '{nodeid}' --hypothesis-seed={seed}"


def current_commit() -> Optional[str]:
    """The checked-out commit the chunk ran on (None outside a git checkout)."""
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def run_chunk(
    seed: int,
    files: list[str],
    *,
    examples: int,
    window_examples: int,
    timeout: float,
    dtype: Optional[str] = None,
    targeted: bool = False,
) -> dict:
    """One chunk: the soak over `files` with this seed; its records, or status 'error' and the output's tail."""
    import hypothesis
    import torch

    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix="soak-") as scratch:
        record = Path(scratch) / "soak.json"
        extra = soak_pytest_args(record, examples, window_examples, dtype, targeted)
        run = run_pytest(extra, profile=SOAK_PROFILE, seed=str(seed), xdist=False, timeout=timeout, paths=files)
        soaked = json.loads(record.read_text()) if record.exists() else None
    shown = [a for a in extra if not a.startswith("--soak-record")]
    return {
        "seed": seed,
        "examples": examples,
        "window_examples": window_examples,
        "dtype": dtype,
        "targeted": targeted,
        "files": list(files),
        "torch": torch.__version__,
        "hypothesis": hypothesis.__version__,
        "commit": current_commit(),
        "date": started,
        "seconds": round(run.seconds, 1),
        "returncode": run.returncode,
        "status": "ok" if soaked is not None else "error",
        "command": " ".join(
            shlex.quote(a)
            for a in ["pytest", "-n", "0", *shown, f"--hypothesis-profile={SOAK_PROFILE}", f"--hypothesis-seed={seed}", *files]
        ),
        "tests": soaked["tests"] if soaked else [],
        "output": run.output if soaked is None or run.returncode not in (0, 1) else "",
    }


def load_chunks(directory: Path) -> list[dict]:
    """Every chunk file under directory/soak, in seed order (a file that is not a chunk's JSON is left out)."""
    chunks = []
    for path in sorted((directory / "soak").glob("chunk-*.json")):
        try:
            chunk = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(chunk, dict) and "tests" in chunk:
            chunk["file"] = path.name
            chunks.append(chunk)
    return sorted(chunks, key=lambda c: (str(c.get("seed")), c.get("file", "")))


def new_family(name: str) -> dict:
    return {
        "family": name,
        "unit": "windows" if name in WINDOW_FAMILIES else "examples",
        "tests": set(),
        "examples": 0,
        "dtypes": {},
        "failing_examples": 0,
        "failure_count": 0,
        "worst": None,
        "where": None,
        "targeted_examples": 0,
        "worst_targeted": None,
        "where_targeted": None,
        "seconds": 0.0,
        "chunks": set(),
        "commits": {},
    }


def worse(value, than) -> bool:
    """Whether the error ÷ tolerance `value` is larger than `than` (None: nothing compared)."""
    return value is not None and (than is None or ratio(value) > ratio(than))


def target(row: dict) -> tuple[bool, str]:
    """Whether a family meets its target (≥ 2,000 windows for distributed, ≥ 20,000 examples per dtype), and what falls short."""
    if row["unit"] == "windows":
        return row["examples"] >= WINDOW_TARGET, "" if row[
            "examples"
        ] >= WINDOW_TARGET else f"{row['examples']:,} < {WINDOW_TARGET:,} windows"
    counts: dict[str, int] = {}
    for name, bucket in row["dtypes"].items():
        key = "float64" if name == "n/a" else name  # a property that draws no dtype runs in float64 (or compares no floats)
        counts[key] = counts.get(key, 0) + bucket["examples"]
    if not counts:
        return False, "no sampled examples"
    short = [f"{name} {count:,}" for name, count in sorted(counts.items()) if count < EXAMPLE_TARGET]
    return not short, ", ".join(short) + (f" < {EXAMPLE_TARGET:,}" if short else "")


def aggregate(chunks: list[dict], command: str = "") -> dict:
    """All chunks into one report: per family counts, dtypes, failures, worst error ÷ tolerance; every failure.

    The same test run twice under the same seed, dtype pin and mode (two chunk files of one seed) draws
    the same examples: only its run with the most examples counts. A targeted chunk's examples are
    counted apart (targeted_examples, worst_targeted): the sampled ones make the target.
    """
    best: dict[tuple[str, str, bool, str, str], tuple[dict, dict]] = {}
    duplicates = 0
    for chunk in chunks:
        for test in chunk.get("tests", []):
            pin, targeted = chunk.get("dtype") or "", bool(chunk.get("targeted"))
            key = (str(chunk.get("seed")), pin, targeted, test["nodeid"], test.get("when", "call"))
            if key in best:
                duplicates += 1
                if (test.get("soak") or {}).get("examples", 0) <= (best[key][1].get("soak") or {}).get("examples", 0):
                    continue
            best[key] = (chunk, test)
    families: dict[str, dict] = {}
    failures, others = [], []
    ordered = sorted(best.items(), key=lambda item: (item[0][3], item[0][0], item[0][1], item[0][2]))
    for (seed, pin, targeted, nodeid, _when), (chunk, test) in ordered:
        soak = test.get("soak") or {}
        if not soak.get("given"):
            if test.get("outcome") in ("failed", "xpassed"):
                others.append(
                    {
                        "test": nodeid,
                        "seed": seed,
                        "when": test.get("when", "call"),
                        "outcome": test["outcome"],
                        "message": test.get("message", ""),
                        "reproduce": f"pytest '{nodeid}' --hypothesis-profile={SOAK_PROFILE} --hypothesis-seed={seed}",
                    }
                )
            continue
        row = families.setdefault(soak["family"], new_family(soak["family"]))
        row["tests"].add(nodeid)
        row["chunks"].add(seed)
        row["failing_examples"] += soak["failing_examples"]
        row["failure_count"] += soak["failure_count"]
        row["seconds"] += soak["seconds"]
        if targeted:
            add_targeted(row, soak, nodeid, seed)
        else:
            add_sampled(row, soak, nodeid, seed, chunk)
        reproduce = soak_reproduce(nodeid, seed, soak.get("max_examples"), pin or None, targeted)
        if test.get("outcome") == "failed":
            others.append(
                {
                    "test": nodeid,
                    "seed": seed,
                    "when": test.get("when", "call"),
                    "outcome": "failed",
                    "message": test.get("message", ""),
                    "reproduce": reproduce,
                }
            )
        for failure in soak["failures"]:
            failures.append(
                {
                    "family": soak["family"],
                    "test": nodeid,
                    "seed": seed,
                    **failure,
                    **({"targeted": True} if targeted else {}),
                    "reproduce": reproduce,
                }
            )
        kept = len(soak["failures"])
        if soak["failure_count"] > kept:
            failures.append(
                {
                    "family": soak["family"],
                    "test": nodeid,
                    "seed": seed,
                    "example": None,
                    "case": "",
                    "dtype": "",
                    "excess": None,
                    "error": "",
                    "message": f"{soak['failure_count'] - kept} more failures not kept (--soak-keep)",
                    "reproduce": reproduce,
                }
            )
    rows = []
    for name in sorted(families):
        row = families[name]
        met, short = target(row)
        rows.append(
            {
                **row,
                "tests": len(row["tests"]),
                "chunks": sorted(row["chunks"], key=seed_order),
                "commits": {
                    commit: {"examples": at["examples"], "worst": at["worst"]}
                    for commit, at in sorted(row["commits"].items(), key=lambda item: (item[1]["first"], item[0]))
                },
                "seconds": round(row["seconds"], 3),
                "examples_per_second": (
                    round((row["examples"] + row["targeted_examples"]) / row["seconds"], 2) if row["seconds"] else None
                ),
                "target_met": met,
                "short_of_target": short,
            }
        )
    torches = sorted({c.get("torch", "?") for c in chunks})
    return {
        "torch": ", ".join(torches) if torches else "?",
        "hypothesis": ", ".join(sorted({c.get("hypothesis", "?") for c in chunks})),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "chunks": [
            {
                k: c.get(k)
                for k in (
                    "file",
                    "seed",
                    "examples",
                    "window_examples",
                    "targeted",
                    "commit",
                    "date",
                    "seconds",
                    "returncode",
                    "status",
                    "command",
                )
            }
            for c in chunks
        ],
        "examples": sum(r["examples"] for r in rows),
        "targeted_examples": sum(r["targeted_examples"] for r in rows),
        "failing_examples": sum(r["failing_examples"] for r in rows),
        "failure_count": sum(r["failure_count"] for r in rows),
        "seconds": round(sum(r["seconds"] for r in rows), 1),
        "chunk_seconds": round(sum(c.get("seconds") or 0 for c in chunks), 1),
        "duplicates_left_out": duplicates,
        "targets": {"examples_per_dtype": EXAMPLE_TARGET, "windows": WINDOW_TARGET, "targeted_examples": TARGETED_AIM},
        "families": rows,
        "failures": failures,
        "other_failures": others,
    }


def add_sampled(row: dict, soak: dict, nodeid: str, seed: str, chunk: dict) -> None:
    """Count one sampled test run into its family's row: examples, per dtype, per commit, the worst and where."""
    row["examples"] += soak["examples"]
    at = row["commits"].setdefault(chunk.get("commit") or "?", {"examples": 0, "worst": None, "first": chunk.get("date") or ""})
    at["examples"] += soak["examples"]
    at["first"] = min(at["first"], chunk.get("date") or "")
    if worse(soak["worst"], at["worst"]):
        at["worst"] = soak["worst"]
    for name, bucket in soak["dtypes"].items():
        mine = row["dtypes"].setdefault(name, {"examples": 0, "failures": 0, "worst": None})
        mine["examples"] += bucket["examples"]
        mine["failures"] += bucket["failures"]
        if worse(bucket["worst"], mine["worst"]):
            mine["worst"] = bucket["worst"]
    if worse(soak["worst"], row["worst"]):
        row["worst"] = soak["worst"]
        row["where"] = worst_place(soak, nodeid, seed)


def add_targeted(row: dict, soak: dict, nodeid: str, seed: str) -> None:
    """Count one targeted test run into its family's row: its examples apart, its worst and where."""
    row["targeted_examples"] += soak["examples"]
    if worse(soak["worst"], row["worst_targeted"]):
        row["worst_targeted"] = soak["worst"]
        row["where_targeted"] = worst_place(soak, nodeid, seed)


def worst_place(soak: dict, nodeid: str, seed: str) -> dict:
    """Where a test run came closest to failing: the test, seed, comparison and case."""
    return {"test": nodeid, "seed": seed, "comparison": soak["worst_comparison"], "case": soak["worst_case"]}


def seed_order(seed) -> tuple:
    """Seeds in numeric order where they are numbers (0, 2, 10, 100), the rest after them as text."""
    text = str(seed)
    return (0, int(text), "") if text.lstrip("-").isdigit() else (1, 0, text)


def number(value: Optional[float]) -> str:
    """An error ÷ tolerance for the table: 3 significant digits, '—' when nothing was compared."""
    if value is None:
        return "—"
    value = ratio(value)
    return "∞" if math.isinf(value) else f"{value:.3g}"


def cut(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_soak_markdown(report: dict, list_limit: int = 50) -> str:
    """The soak as markdown: header, one row per family, where each came closest to failing, every failure."""
    chunks = report["chunks"]
    seeds = ", ".join(str(s) for s in sorted({c["seed"] for c in chunks}, key=seed_order)) or "none"
    sizes = sorted({c.get("examples") for c in chunks if c.get("examples") is not None})
    per_chunk = f"{', '.join(f'{e:,}' for e in sizes)} examples per @given test per chunk" if sizes else "no examples"
    broken = [c for c in chunks if c.get("status") != "ok"]
    commits = ", ".join(sorted({c["commit"] for c in chunks if c.get("commit")}))
    lines = [
        "# Soak: no false failures, and how close a sound torch comes to one",
        "",
        f"torch {report['torch']}, hypothesis {report['hypothesis']}; rendered {report['date']}.",
        f"{len(chunks)} chunk(s), seeds {seeds}; {per_chunk}." + (f" Commits: {commits}." if commits else ""),
        "",
        f"**{report['examples']:,} examples, {report['failing_examples']:,} false failures**"
        + (
            f" ({report['failure_count']:,} failing properties or comparisons in all)"
            if report["failure_count"] != report["failing_examples"]
            else ""
        )
        + (
            f" and **{report['targeted_examples']:,} targeted examples** (`--targeted`)"
            if report.get("targeted_examples")
            else ""
        )
        + f" in {report['seconds']:,.0f} s inside the soaked tests ({report.get('chunk_seconds', 0):,.0f} s of chunk wall time).",
        "",
        f"Command: `{report['command']}`" if report["command"] else "",
        "",
        "| family | tests | examples | per dtype | false failures | worst error ÷ tolerance, sampled | targeted examples "
        "| worst, targeted | examples/s | target |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["families"]:
        dtypes = " · ".join(f"{name} {bucket['examples']:,}" for name, bucket in sorted(row["dtypes"].items()))
        examples = f"{row['examples']:,}" + (" windows" if row["unit"] == "windows" else "")
        failures = f"**{row['failing_examples']:,}**" if row["failing_examples"] else "0"
        rate = "—" if row["examples_per_second"] is None else f"{row['examples_per_second']:.1f}"
        goal = "✓" if row["target_met"] else f"✗ ({row['short_of_target']})"
        targeted = f"{row.get('targeted_examples', 0):,}" if row.get("targeted_examples") else "—"
        lines.append(
            f"| {row['family']} | {row['tests']} | {examples} | {dtypes} | {failures} | "
            f"{number(row['worst'])} | {targeted} | {number(row.get('worst_targeted'))} | {rate} | {goal} |"
        )
    lines += [
        "",
        f"*error ÷ tolerance*: max |actual − expected| / (atol + rtol·|expected|) over every comparison of an "
        f"example that passed (1 is the tolerance). *target*: ≥ {EXAMPLE_TARGET:,} examples per dtype (n/a: the "
        f"property draws no dtype and runs in float64, so it counts as float64), "
        f"≥ {WINDOW_TARGET:,} windows for distributed (one example is one window), counted over the sampled "
        f"examples. *Targeted*: chunks run with `--targeted`, where Hypothesis' target phase climbs toward the "
        f"bound each comparison reports its error ÷ tolerance as (aim: ≥ {TARGETED_AIM:,} targeted examples per family).",
    ]
    closest = [(r, mode) for r in report["families"] for mode in ("", "_targeted") if r.get(f"where{mode}")]
    if closest:
        lines += ["", "## Closest to failing", ""]
        for row, mode in closest:
            where = row[f"where{mode}"]
            lines.append(
                f"- **{row['family']}**{' (targeted)' if mode else ''} {number(row[f'worst{mode}'])}: {where['comparison']} "
                f"in `{where['test'].split('::')[-1]}` (seed {where['seed']}); {cut(where['case'], 300)}"
            )
    if any(len(row.get("commits") or {}) > 1 for row in report["families"]):
        lines += [
            "",
            "## Examples per commit",
            "",
            "Bounds can change between commits, so each family's examples and worst error ÷ tolerance are given "
            "per commit its chunks ran on, oldest first.",
            "",
        ]
        for row in report["families"]:
            runs = " · ".join(
                f"{'commit not recorded' if commit == '?' else commit} {at['examples']:,} (worst {number(at['worst'])})"
                for commit, at in (row.get("commits") or {}).items()
            )
            lines.append(f"- **{row['family']}**: {runs}")
    failures = report["failures"]
    lines += ["", "## False failures", ""]
    if not failures:
        lines.append("None.")
    shown: dict[str, int] = defaultdict(int)
    for failure in failures:
        shown[failure["test"]] += 1
        if list_limit and shown[failure["test"]] == list_limit + 1:
            left = sum(1 for f in failures if f["test"] == failure["test"]) - list_limit
            lines.append(f"- … {left} more failures of `{failure['test']}` are listed in soak.json")
        if list_limit and shown[failure["test"]] > list_limit:
            continue
        if failure.get("example") is None:
            lines.append(f"- `{failure['test']}` (seed {failure['seed']}): {failure['message']}")
            continue
        what = f" [{failure['property']}]" if failure.get("property") else ""
        what += " (targeted)" if failure.get("targeted") else ""
        first = (failure.get("message") or "").splitlines()[:1]
        lines += [
            f"- **{failure['family']}**{what} `{failure['test'].split('::')[-1]}`, seed {failure['seed']}, "
            f"example {failure['example']}, {failure['dtype']}, error ÷ tolerance {number(failure.get('excess'))}",
            f"  - case: {cut(failure['case'], 400)}",
            f"  - {cut(first[0], 300) if first else failure.get('error', '')}",
            f"  - reproduce: `{failure['reproduce']}`",
        ]
    if report["other_failures"]:
        lines += ["", "## Other failing tests (run once per chunk, not soaked)", ""]
        for other in report["other_failures"]:
            lines.append(
                f"- `{other['test']}` ({other['when']}, seed {other['seed']}): {cut(other['message'], 300)}\n"
                f"  reproduce: `{other['reproduce']}`"
            )
    if broken:
        lines += ["", "## Chunks that did not finish", ""]
        lines += [f"- seed {c['seed']}: status {c['status']}, exit {c['returncode']} after {c['seconds']} s" for c in broken]
    if report["duplicates_left_out"]:
        lines += ["", f"Note: {report['duplicates_left_out']} test run(s) repeated a seed already counted and were left out."]
    return "\n".join(line for i, line in enumerate(lines) if line or (i and lines[i - 1])) + "\n"


def write_soak_reports(report: dict, directory: Path, list_limit: int = 50) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "soak.json").write_text(json.dumps(report, indent=1) + "\n")
    (directory / "soak.md").write_text(render_soak_markdown(report, list_limit))


def soak(args, command: str, progress: Callable[[str], None]) -> int:
    """Run the chunks not yet saved, then aggregate every chunk file into soak.json and soak.md."""
    directory = args.output
    status = 0
    if not args.render:
        files = select_families(soak_files(), args.families)
        names = sorted(files) if args.families else None
        examples = args.examples
        window_examples = args.distributed_examples or max(1, examples // 10)
        seeds = range(args.start, args.start + args.chunks)

        def path(seed: int) -> Path:
            return chunk_path(directory, seed, names, args.dtype, args.targeted)

        todo = [s for s in seeds if args.fresh or not path(s).exists()]
        for seed in sorted(set(seeds) - set(todo)):
            progress(f"chunk {seed}: already in {path(seed)}, skipped (--fresh redoes it)")

        def one(seed: int) -> dict:
            chunk = run_chunk(
                seed,
                list(files.values()),
                examples=examples,
                window_examples=window_examples,
                timeout=args.timeout or 24 * 3600,
                dtype=args.dtype,
                targeted=args.targeted,
            )
            chunk["invocation"] = command
            if chunk["status"] == "ok":
                path(seed).parent.mkdir(parents=True, exist_ok=True)
                path(seed).write_text(json.dumps(chunk, indent=1) + "\n")
            given = [t["soak"] for t in chunk["tests"] if (t.get("soak") or {}).get("given")]
            progress(
                f"chunk {seed}: {chunk['status']}, {sum(g['examples'] for g in given):,} examples, "
                f"{sum(g['failing_examples'] for g in given):,} failing, {chunk['seconds']:.0f} s"
                + ("" if chunk["status"] == "ok" else f"; not saved:\n{chunk['output']}")
            )
            return chunk

        with ThreadPoolExecutor(max_workers=max(1, args.jobs or 1)) as pool:
            results = list(pool.map(one, todo))
        status = 1 if any(c["status"] != "ok" for c in results) else 0
    chunks = load_chunks(directory)
    if not chunks:
        progress(f"no chunk files under {directory / 'soak'}: nothing to aggregate")
        return 1
    report = aggregate(chunks, command)
    write_soak_reports(report, directory, args.list_limit)
    print(render_soak_markdown(report, args.list_limit))
    return 1 if status or report["failing_examples"] or report["other_failures"] else 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tools.reliability", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seeds", type=int, default=20, help="how many seeds (default: 20)")
    p.add_argument("--start", type=int, default=0, help="first seed (default: 0); with --soak, chunk i uses START+i")
    p.add_argument("--profile", default="thorough", help="Hypothesis profile of the seeds (default: thorough)")
    p.add_argument("--with-meta", action="store_true", help="also run tests/meta")
    p.add_argument(
        "--jobs", type=int, default=None, help="seeds (or soak chunks) run at the same time (default: cores; 1 with --soak)"
    )
    p.add_argument("--timeout", type=float, default=None, help="seconds allowed per seed (default 3600) or chunk (default 86400)")
    p.add_argument("--output", type=Path, default=REPORTS, help="where the reports go (default: reports/)")
    soak_group = p.add_argument_group("soak")
    soak_group.add_argument("--soak", action="store_true", help="run the soak instead of the seeds")
    soak_group.add_argument("--examples", type=int, default=2000, help="examples per @given test per chunk (default: 2000)")
    soak_group.add_argument(
        "--distributed-examples", type=int, default=None, help="windows per distributed test per chunk (default: --examples / 10)"
    )
    soak_group.add_argument("--chunks", type=int, default=1, help="chunks to run (default: 1)")
    soak_group.add_argument("--families", nargs="+", metavar="NAME", help="only these families (module names)")
    soak_group.add_argument(
        "--dtype",
        choices=("float32", "float16", "bfloat16"),
        help="strategies that may draw low precision draw only this dtype (chunk files get -DTYPE)",
    )
    soak_group.add_argument(
        "--targeted",
        action="store_true",
        help="add Hypothesis' target phase, climbing toward each bound (chunk files get -targeted; counted apart)",
    )
    soak_group.add_argument("--fresh", action="store_true", help="run seeds (or chunks) again even when their file exists")
    soak_group.add_argument("--render", action="store_true", help="only aggregate the chunk files already there")
    soak_group.add_argument(
        "--list-limit",
        type=int,
        default=50,
        help="failures listed per test in soak.md (default 50, 0: all; soak.json has every one kept)",
    )
    return p


def main(argv: Optional[list[str]] = None) -> int:
    import torch

    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    if not args.render:
        require_clone("python -m tools.reliability")
    if args.soak or args.render:
        command = "python -m tools.reliability " + " ".join(shlex.quote(a) for a in argv)
        return soak(args, command, lambda line: print(line, file=sys.stderr, flush=True))
    start = time.perf_counter()
    jobs = args.jobs or os.cpu_count() or 1
    timeout = args.timeout or 3600
    directory = args.output / "reliability"
    directory.mkdir(parents=True, exist_ok=True)

    def one(seed: int) -> dict:
        path = seed_path(directory, args.profile, args.with_meta, seed)
        if path.exists() and not args.fresh:
            row = json.loads(path.read_text())
            print(f"seed {seed}: {row['status']} (kept from {path.name})", file=sys.stderr, flush=True)
            return row
        row = run_seed(seed, profile=args.profile, with_meta=args.with_meta, timeout=timeout)
        row.update(
            torch=torch.__version__, commit=current_commit(), finished=datetime.now(timezone.utc).isoformat(timespec="seconds")
        )
        path.write_text(json.dumps(row, indent=1) + "\n")
        print(f"seed {seed}: {row['status']} ({row['seconds']:.0f} s)", file=sys.stderr, flush=True)
        return row

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        rows = list(pool.map(one, range(args.start, args.start + args.seeds)))
    report = {
        "torch": torch.__version__,
        "profile": args.profile,
        "with_meta": args.with_meta,
        "seconds": round(time.perf_counter() - start, 1),
        "seed_seconds": round(sum(r["seconds"] for r in rows), 1),
        "commits": sorted({r["commit"] for r in rows if r.get("commit")}),
        "finished": max((r.get("finished", "") for r in rows), default=""),
        "seeds": rows,
        "passed": sum(r["passed"] for r in rows),
    }
    (args.output / "reliability.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.output / "reliability.md").write_text(render_markdown(report))
    print(render_markdown(report))
    return 0 if report["passed"] == len(rows) else 1


def seed_path(directory: Path, profile: str, with_meta: bool, seed: int) -> Path:
    """reports/reliability/seed-<profile>[-meta]-<seed>.json: one finished seed, kept so that a run can resume."""
    return directory / f"seed-{profile}{'-meta' if with_meta else ''}-{seed}.json"


if __name__ == "__main__":
    sys.exit(main())
