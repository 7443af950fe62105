"""No false failures: run the suite under many distinct --hypothesis-seed values and report pass or fail per seed.

    python -m properties.reliability --seeds 20                 # thorough profile, seeds 0…19
    python -m properties.reliability --seeds 5 --start 1000 --profile ci --with-meta

Each seed is one pytest subprocess (by default without tests/meta, whose negative controls are
derandomized and so do not depend on the seed) with the example database off, so that no seed
replays another's examples. A failing seed lists its failing tests and the command that
reproduces each. Writes reports/reliability.json and reports/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

from properties.audit import REPORTS, SUITE_ARGS, failed_tests, run_pytest


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
        "# Reliability: no false failures", "",
        f"torch {report['torch']}, profile `{report['profile']}`, {'with' if report['with_meta'] else 'without'} "
        f"tests/meta: **{passed}/{len(rows)} seeds passed** in {report['seconds']:.0f} s.", "",
        "| seed | result | tests | examples | seconds | failing tests |", "|---|---|---|---|---|---|",
    ]
    for r in rows:
        failing = ", ".join(f"`{f['test'].split('::')[-1]}`" for f in r["failures"]) or "—"
        cells = [r["seed"], r["status"], r["tests"], r["examples"], f"{r['seconds']:.1f}", failing]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    failures = [f for r in rows for f in r["failures"]]
    if failures:
        lines += ["", "## Reproduce", ""]
        lines += [f"- {f['message'] or f['test']}\n  `{f['reproduce']}`" for f in failures]
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m properties.reliability", description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=20, help="how many seeds (default: 20)")
    p.add_argument("--start", type=int, default=0, help="first seed (default: 0)")
    p.add_argument("--profile", default="thorough", help="Hypothesis profile (default: thorough)")
    p.add_argument("--with-meta", action="store_true", help="also run tests/meta")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="seeds run at the same time (default: cores)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds allowed per seed")
    p.add_argument("--output", type=Path, default=REPORTS, help="where reliability.json and .md go")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    import torch

    args = parser().parse_args(argv)
    start = time.perf_counter()

    def one(seed: int) -> dict:
        row = run_seed(seed, profile=args.profile, with_meta=args.with_meta, timeout=args.timeout)
        print(f"seed {seed}: {row['status']} ({row['seconds']:.0f} s)", file=sys.stderr, flush=True)
        return row

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        rows = list(pool.map(one, range(args.start, args.start + args.seeds)))
    report = {"torch": torch.__version__, "profile": args.profile, "with_meta": args.with_meta,
              "seconds": round(time.perf_counter() - start, 1), "seeds": rows,
              "passed": sum(r["passed"] for r in rows)}
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "reliability.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.output / "reliability.md").write_text(render_markdown(report))
    print(render_markdown(report))
    return 0 if report["passed"] == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
