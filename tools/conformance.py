"""Framework conformance: every bundled configuration of each installed framework, property by property.

    python -m tools.conformance                     # every framework installed, 40 drawn examples each
    python -m tools.conformance --examples 200      # search longer
    python -m tools.conformance --frameworks accelerate
    python -m tools.conformance --output DIR --label "a year ago"   # in another environment: DIR/conformance.json
    python -m tools.conformance --merge reports DIR …               # one report of several framework versions

For each configuration (properties/frameworks/: the transformers Trainer, Lightning's Trainer,
Accelerate, DeepSpeed's engine and pipeline engine), the recipe checker's search runs the real framework on the measured edge examples and
on drawn ones, and judges each recipe property: pass, fail (a counterexample no registered
deviation explains, shrunk) or known deviation (registered in properties/frameworks/deviations.py
for the installed version, its counterexample shrunk too). The measured set-ups are listed with
‖.grad‖ ÷ ‖window's mean-loss gradient‖ per step. Writes reports/conformance.md and .json.

A configuration the installed version lacks (the Trainer's num_items_in_batch before 4.46) is
listed as not available in that version. `--merge` reads the conformance.json of runs in several
environments (each `--output DIR`, one framework version each) and writes one report, a row per
framework × version × configuration, with each registered deviation's measured boundary.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Optional

from tools.audit import REPORTS, require_clone

PROPERTY_NAMES = ("runs", "data", "finite", "steps", "leaks", "gradients", "parameters")
MARKS = {"pass": "✓ pass", "fail": "✗ fail", "known deviation": "⚠ known deviation"}


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(prog="python -m tools.conformance", description=__doc__.split("\n\n")[0])
    parse.add_argument("--examples", type=int, default=40, help="drawn examples per configuration, after the edge examples")
    parse.add_argument(
        "--frameworks", nargs="*", default=None, help="transformers, pytorch-lightning, accelerate, deepspeed (default: all)"
    )
    parse.add_argument("--output", type=Path, default=REPORTS, help="directory for conformance.md and conformance.json")
    parse.add_argument("--label", default="", help="what this environment is, for a merged report (e.g. 'a year ago')")
    parse.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="render one report from each DIR/conformance.json (runs of several framework versions) into --output; runs nothing",
    )
    return parse


def finding_json(finding) -> Optional[dict]:
    """A finding as JSON: the failing properties, the example in the framework's terms, the ratios and the message."""
    if finding is None:
        return None
    example = finding.example
    return {
        "properties": list(finding.verdict.properties),
        "shrunk": finding.shrunk,
        "counterexample": repr(example),
        "dataset_rows": example.rows_per_epoch,
        "batch_size": example.batch_size,
        "k": example.k,
        "epochs": example.epochs,
        "model": example.case.model if isinstance(example.case.model, str) else repr(example.case.model),
        "ratios": list(finding.verdict.ratios),
        "message": str(finding.error),
    }


def configuration_json(result) -> dict:
    """One configuration's results, property by property, with its counterexamples and what the framework documents."""
    configuration = result.configuration
    deviation = result.deviation.verdict.deviation if result.deviation is not None else result.expected
    return {
        "framework": configuration.framework.distribution,
        "version": result.version,
        "key": configuration.key,
        "id": configuration.id,
        "data": configuration.data,
        "configuration": configuration.name,
        "examples": result.examples,
        "results": {name: result.result(name) for name in PROPERTY_NAMES},
        "failure": finding_json(result.failure),
        "deviation": finding_json(result.deviation),
        "registered_deviation": None
        if deviation is None
        else {
            "name": deviation.name,
            "versions": deviation.versions,
            "what": deviation.what,
            "source": deviation.source,
            "kind": deviation.kind,
            "measured": deviation.measured,
            "reproduced": result.deviation is not None,
        },
        "documented": configuration.documented,
        "source": configuration.source,
    }


def measured(configuration) -> list[dict]:
    """The edge examples (the measured set-ups) of one configuration: batches, windows, outcome, ratio per step."""
    from properties.frameworks.check import Search

    search = Search(configuration)
    rows = []
    for example in search.edge_examples():
        verdict = search.judge(example)
        counts = example.epoch.counts() if configuration.data == "tokens" else list(example.epoch_sizes)
        windows = " ".join(str([counts[j] for j in window]) for window in example.all_windows)
        rows.append(
            {
                "framework": configuration.framework.distribution,
                "version": search.version,
                "key": configuration.key,
                "id": configuration.id,
                "dataset_rows": example.rows_per_epoch,
                "batch_size": getattr(example, "micro_batch_size", example.batch_size),
                "ranks": getattr(example, "replicas", 1),
                "k": example.k,
                "windows": windows,
                "outcome": verdict.outcome,
                "ratios": list(verdict.ratios),
                "call": example.call,
            }
        )
    return rows


def unavailable_json(configuration, reason: str) -> dict:
    """A configuration the installed framework version lacks, and why."""
    return {
        "framework": configuration.framework.distribution,
        "version": configuration.framework.version(),
        "key": configuration.key,
        "id": configuration.id,
        "configuration": configuration.name,
        "reason": reason,
    }


def run(names: Optional[list[str]], examples: int, label: str = "") -> dict:
    """Check every configuration of the named (or all) frameworks; the report as a dict."""
    import torch

    from properties.frameworks import MODULES, configurations, missing
    from properties.frameworks.check import check_configuration
    from properties.frameworks.configuration import FRAMEWORKS

    names = names or list(MODULES)
    report: dict = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "examples": examples,
        "frameworks": {name: FRAMEWORKS[name].version() for name in names},
        "label": label,
        "missing": {},
        "configurations": [],
        "unavailable": [],
        "measured": [],
    }
    started = time.monotonic()
    for name in names:
        reason = missing(name)
        if reason is not None:
            report["missing"][name] = reason
            continue
        for configuration in configurations(name):
            lacks = configuration.missing()
            if lacks is not None:
                report["unavailable"].append(unavailable_json(configuration, lacks))
                print(f"{configuration.label}: {lacks}", flush=True)
                continue
            began = time.monotonic()
            result = check_configuration(configuration, max_examples=examples, shrink=True, shrink_deviation=True)
            entry = configuration_json(result)
            entry["seconds"] = round(time.monotonic() - began, 1)
            report["configurations"].append(entry)
            report["measured"] += measured(configuration)
            print(f"{configuration.label}: " + ", ".join(f"{k} {v}" for k, v in entry["results"].items()), flush=True)
    report["seconds"] = round(time.monotonic() - started, 1)
    return report


def ratios_text(ratios: list) -> str:
    return ", ".join(f"{r:g}" for r in ratios) if ratios else "—"


def merge(reports: list[dict]) -> dict:
    """Several runs' reports (one environment each) as one: `runs` says what each ran, every row carries its version."""
    merged: dict = {"runs": [], "missing": {}, "configurations": [], "unavailable": [], "measured": []}
    for report in reports:
        for run_ in report.get("runs") or [report]:
            merged["runs"].append(
                {key: run_.get(key) for key in ("label", "torch", "python", "examples", "seconds", "frameworks")}
            )
        for name, reason in report["missing"].items():
            merged["missing"].setdefault(name, reason)
        merged["configurations"] += report["configurations"]
        merged["unavailable"] += report.get("unavailable", [])
        versions = report.get("frameworks", {})
        merged["measured"] += [{"version": versions.get(row["framework"]), **row} for row in report["measured"]]
    for entry in merged["configurations"]:  # each deviation's versions as the registry measures them now
        refresh(entry["registered_deviation"])
    checked = {entry["framework"] for entry in merged["configurations"] + merged["unavailable"]}
    merged["missing"] = {name: reason for name, reason in merged["missing"].items() if name not in checked}
    frameworks: dict = {}
    for index, run_ in enumerate(merged["runs"]):
        for name, version in run_["frameworks"].items():
            frameworks.setdefault(name, len(frameworks))
            frameworks.setdefault((name, version), index)
    for rows in (merged["configurations"], merged["unavailable"], merged["measured"]):  # framework, then run (stable)
        rows.sort(key=lambda e: (frameworks.get(e["framework"], 0), frameworks.get((e["framework"], e["version"]), 0)))
    return merged


def run_line(run_: dict) -> str:
    """'transformers 5.24.0, pytorch-lightning 2.6.6 …; torch 2.13.0+cpu, Python 3.11.7, 40 drawn examples, 63.5 s'."""
    versions = ", ".join(f"{name} {version or '(not installed)'}" for name, version in run_["frameworks"].items())
    label = f"{run_['label']}: " if run_.get("label") else ""
    return f"{label}{versions}; torch {run_['torch']}, Python {run_['python']}, CPU, {run_['examples']} drawn examples, {run_['seconds']} s"


def boundaries_lines() -> list[str]:
    """Each registered framework deviation, its versions and how its boundary was measured."""
    from properties.frameworks.deviations import DEVIATIONS

    lines = [
        "## The registered deviations and their measured boundaries",
        "",
        "From `properties/frameworks/deviations.py`: the first release that shows each deviation and the first that no "
        "longer does, as measured on the releases that install beside this torch ([docs/frameworks.md](../docs/frameworks.md)).",
        "",
        "| framework | deviation | configurations | versions | measured |",
        "|---|---|---|---|---|",
    ]
    for deviation in DEVIATIONS:
        lines.append(
            f"| {deviation.framework} | {deviation.name} | {', '.join(deviation.configurations)} | {deviation.versions} | "
            f"{deviation.measured or '—'} |"
        )
    return lines + [""]


def refresh(deviation: Optional[dict]) -> None:
    """A run's registered deviation given the registry's current versions and measured boundary (matched by name)."""
    from properties.frameworks.deviations import DEVIATIONS

    entry = next((entry for entry in DEVIATIONS if deviation is not None and entry.name == deviation["name"]), None)
    if entry is not None:
        deviation.update(versions=entry.versions, measured=entry.measured)


def registry_versions(deviation: dict) -> str:
    """The deviation's versions as the registry states them now (its measured boundary), else as the run recorded them."""
    from properties.frameworks.deviations import DEVIATIONS

    return next((entry.versions for entry in DEVIATIONS if entry.name == deviation["name"]), deviation["versions"])


def render_markdown(report: dict) -> str:
    """The report: the matrix, each configuration's counterexample beside what the framework documents, the measured set-ups;
    for a merged report (several runs), a row per framework × version × configuration and the deviations' boundaries."""
    merged = "runs" in report
    if merged:
        runs = "".join(f"\n- {run_line(run_)}" for run_ in report["runs"])
        opening = [
            "# Framework conformance",
            "",
            f"Several versions of each framework, one environment each, written by `python -m tools.conformance` and merged "
            f"by `python -m tools.conformance --merge`:\n{runs}",
            "",
            "Per configuration, the measured edge examples and then the drawn ones (derandomized), each run through the "
            "real framework and judged by the recipe properties ([docs/frameworks.md](../docs/frameworks.md)). ✓ pass: no "
            "counterexample found; ✗ fail: a counterexample no registered deviation explains; ⚠ known deviation: "
            "registered in `properties/frameworks/deviations.py` for this version, and its behaviour reproduces every "
            "step; — not available: the version lacks what the configuration uses.",
            "",
        ]
    else:
        versions = ", ".join(f"{name} {version or '(not installed)'}" for name, version in report["frameworks"].items())
        opening = [
            "# Framework conformance",
            "",
            f"{versions}; torch {report['torch']}, Python {report['python']}, CPU. Written by `python -m tools.conformance` "
            f"in {report['seconds']} s: per configuration, the measured edge examples and then {report['examples']} drawn ones "
            "(derandomized), each run through the real framework and judged by the recipe properties "
            "([docs/frameworks.md](../docs/frameworks.md)). ✓ pass: no counterexample found; ✗ fail: a counterexample no "
            "registered deviation explains; ⚠ known deviation: registered in `properties/frameworks/deviations.py` for this "
            "version, and its behaviour reproduces every step.",
            "",
        ]
    lines = opening
    for name, reason in report["missing"].items():
        lines += [f"- {name}: not checked — {reason}", ""]
    header = "| framework | version | configuration | " + " | ".join(PROPERTY_NAMES) + " | examples |"
    lines += [header, "|" + "---|" * (len(PROPERTY_NAMES) + 4)]
    rows = [(entry, None) for entry in report["configurations"]] + [(None, entry) for entry in report.get("unavailable", [])]
    if merged:
        order = {}
        for entry in report["configurations"] + report.get("unavailable", []):
            order.setdefault((entry["framework"], entry["version"]), len(order))
            order.setdefault(entry["id"], len(order))
        rows.sort(
            key=lambda pair: (
                order[((pair[0] or pair[1])["framework"], (pair[0] or pair[1])["version"])],
                order[(pair[0] or pair[1])["id"]],
            )
        )
    for entry, lacking in rows:
        if lacking is not None:
            lines.append(
                f"| {lacking['framework']} | {lacking['version']} | {lacking['configuration']} | "
                + " | ".join(["— not available"] * len(PROPERTY_NAMES))
                + " | 0 |"
            )
            continue
        cells = [MARKS[entry["results"][name]] for name in PROPERTY_NAMES]
        lines.append(
            f"| {entry['framework']} | {entry['version']} | {entry['configuration']} | "
            + " | ".join(cells)
            + f" | {entry['examples']} |"
        )
    for lacking in report.get("unavailable", []):
        lines += ["", f"- {lacking['framework']} {lacking['version']}, {lacking['configuration']}: {lacking['reason']}"]
    if merged:
        lines += [""] + boundaries_lines()[:-1]
    lines += ["", "## Each configuration", ""]
    for entry in report["configurations"]:
        lines += [f"### {entry['framework']} {entry['version']}: {entry['configuration']}", ""]
        lines += [f"Documented: {entry['documented']} ({entry['source']})", ""]
        if entry["failure"]:
            failure = entry["failure"]
            lines += [
                f"**✗ fails** {', '.join(failure['properties'])} — counterexample{' (shrunk)' if failure['shrunk'] else ''}:",
                "",
                "```",
                failure["message"],
                "```",
                "",
            ]
        deviation = entry["registered_deviation"]
        if entry["deviation"]:
            found = entry["deviation"]
            lines += [
                f"**⚠ known deviation** ({deviation['kind']}, {registry_versions(deviation)}): {deviation['what']}. "
                f"Source: {deviation['source']}.",
                "",
                f"Counterexample{' (shrunk)' if found['shrunk'] else ''}: `{found['counterexample']}` — fails "
                f"{', '.join(found['properties'])}; ‖.grad‖ ÷ ‖window's mean-loss gradient‖ per step: {ratios_text(found['ratios'])}.",
                "",
            ]
        elif deviation:
            lines += [
                f"Registered deviation not reproduced in {entry['examples']} examples: {deviation['name']} — fixed upstream?",
                "",
            ]
        if not entry["failure"] and not entry["deviation"]:
            lines += [f"**✓ passes** every property on {entry['examples']} examples.", ""]
    version_column = "version | " if merged else ""
    lines += [
        "## The measured set-ups",
        "",
        "Linear(3→1), float64, seed 0, one epoch, SGD(lr=0.1): ‖.grad‖ ÷ ‖gradient of the window's mean loss‖ at each "
        "optimizer step (1 = right). Where a window holds the short last batch the ratio depends on the data. Padded "
        "tokens: sequences of lengths 3, 1, 4, 2, 5, 1, 3, 2, 4, 5 (the first N), the token model, cross-entropy over the "
        "labels ≠ -100; a batch is shown by its counted tokens. DeepSpeed: float32; on several ranks the batch is a rank's "
        "micro-batch and each window shows the ranks' micro-batches together.",
        "",
        f"| framework | {version_column}configuration | N, batch, k → the batches of each window (rows; counted tokens) | outcome | ratio per step |",
        "|---|" + "---|" * (5 if merged else 4),
    ]
    names = {e["id"]: e["configuration"] for e in report["configurations"]}
    measured_rows = report["measured"]
    if merged:
        order = {}
        for entry in report["configurations"]:
            order.setdefault((entry["framework"], entry["version"]), len(order))
        measured_rows = sorted(measured_rows, key=lambda row: order.get((row["framework"], row["version"]), len(order)))
    for row in measured_rows:
        outcome = {"pass": "✓ pass", "fail": "✗ fail", "deviation": "⚠ known deviation"}[row["outcome"]]
        version = f"{row['version']} | " if merged else ""
        lines.append(
            f"| {row['framework']} | {version}{names[row['id']]} | {row['dataset_rows']}, {row['batch_size']}"
            + (f" on each of {row['ranks']} ranks" if row.get("ranks", 1) > 1 else "")
            + f", {row['k']} → {row['windows']} | {outcome} | {ratios_text(row['ratios'])} |"
        )
    return "\n".join(lines) + "\n"


def write(report: dict, output: Path) -> None:
    """conformance.json and conformance.md in `output`."""
    output.mkdir(parents=True, exist_ok=True)
    (output / "conformance.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (output / "conformance.md").write_text(render_markdown(report), encoding="utf-8")
    print(f"wrote {output / 'conformance.md'} and conformance.json")


def main(argv: Optional[list[str]] = None) -> int:
    args = parser().parse_args(argv)
    if args.merge:
        reports = [json.loads((directory / "conformance.json").read_text(encoding="utf-8")) for directory in args.merge]
        write(merge(reports), args.output)
        return 0
    require_clone("python -m tools.conformance")
    write(run(args.frameworks, args.examples, args.label), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
