"""Framework conformance: every bundled configuration of each installed framework, property by property.

    python -m tools.conformance                     # every framework installed, 40 drawn examples each
    python -m tools.conformance --examples 200      # search longer
    python -m tools.conformance --frameworks accelerate

For each configuration (properties/frameworks/: the transformers Trainer, Lightning's Trainer,
Accelerate, DeepSpeed's engine and pipeline engine), the recipe checker's search runs the real framework on the measured edge examples and
on drawn ones, and judges each recipe property: pass, fail (a counterexample no registered
deviation explains, shrunk) or known deviation (registered in properties/frameworks/deviations.py
for the installed version, its counterexample shrunk too). The measured set-ups are listed with
‖.grad‖ ÷ ‖window's mean-loss gradient‖ per step. Writes reports/conformance.md and .json.
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


def run(names: Optional[list[str]], examples: int) -> dict:
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
        "missing": {},
        "configurations": [],
        "measured": [],
    }
    started = time.monotonic()
    for name in names:
        reason = missing(name)
        if reason is not None:
            report["missing"][name] = reason
            continue
        for configuration in configurations(name):
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


def render_markdown(report: dict) -> str:
    """The report: the matrix, each configuration's counterexample beside what the framework documents, the measured set-ups."""
    versions = ", ".join(f"{name} {version or '(not installed)'}" for name, version in report["frameworks"].items())
    lines = [
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
    for name, reason in report["missing"].items():
        lines += [f"- {name}: not checked — {reason}", ""]
    header = "| framework | version | configuration | " + " | ".join(PROPERTY_NAMES) + " | examples |"
    lines += [header, "|" + "---|" * (len(PROPERTY_NAMES) + 4)]
    for entry in report["configurations"]:
        cells = [MARKS[entry["results"][name]] for name in PROPERTY_NAMES]
        lines.append(
            f"| {entry['framework']} | {entry['version']} | {entry['configuration']} | "
            + " | ".join(cells)
            + f" | {entry['examples']} |"
        )
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
                f"**⚠ known deviation** ({deviation['kind']}, {deviation['versions']}): {deviation['what']}. "
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
    lines += [
        "## The measured set-ups",
        "",
        "Linear(3→1), float64, seed 0, one epoch, SGD(lr=0.1): ‖.grad‖ ÷ ‖gradient of the window's mean loss‖ at each "
        "optimizer step (1 = right). Where a window holds the short last batch the ratio depends on the data. Padded "
        "tokens: sequences of lengths 3, 1, 4, 2, 5, 1, 3, 2, 4, 5 (the first N), the token model, cross-entropy over the "
        "labels ≠ -100; a batch is shown by its counted tokens. DeepSpeed: float32; on several ranks the batch is a rank's "
        "micro-batch and each window shows the ranks' micro-batches together.",
        "",
        "| framework | configuration | N, batch, k → the batches of each window (rows; counted tokens) | outcome | ratio per step |",
        "|---|---|---|---|---|",
    ]
    names = {e["id"]: e["configuration"] for e in report["configurations"]}
    for row in report["measured"]:
        outcome = {"pass": "✓ pass", "fail": "✗ fail", "deviation": "⚠ known deviation"}[row["outcome"]]
        lines.append(
            f"| {row['framework']} | {names[row['id']]} | {row['dataset_rows']}, {row['batch_size']}"
            + (f" on each of {row['ranks']} ranks" if row.get("ranks", 1) > 1 else "")
            + f", {row['k']} → {row['windows']} | {outcome} | {ratios_text(row['ratios'])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    args = parser().parse_args(argv)
    require_clone("python -m tools.conformance")
    report = run(args.frameworks, args.examples)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "conformance.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (args.output / "conformance.md").write_text(render_markdown(report), encoding="utf-8")
    print(f"wrote {args.output / 'conformance.md'} and conformance.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
