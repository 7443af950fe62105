"""What a launched run reports: a per-property summary line, a JUnit XML file and a JSON summary, written by rank 0."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from properties.distributed.runner import Result

OUTCOMES = ("passed", "failed", "skipped", "not run")


def header(run: dict) -> str:
    """The run in one line: torch, world, backend, device, nodes, examples, seed."""
    return (
        f"properties.distributed: torch {run['torch']}, {run['world_size']} ranks on {run['nodes']} node(s), "
        f"{run['backend']} on {run['device']}, up to {run['examples']} examples per property, seed {run['seed']}"
        + (f", fault {run['fault']}" if run.get("fault") else "")
    )


def summary_lines(results: list[Result]) -> list[str]:
    """One line per property (outcome, id, runs, seconds, the first line of a failure or skip), then the counts."""
    width = max((len(result.id) for result in results), default=0)
    lines = []
    for result in results:
        note = result.headline[:200]
        lines.append(
            f"{result.outcome.upper():8} {result.id:{width}}  {result.runs:4} runs {result.seconds:7.2f} s  {note}".rstrip()
        )
    counts = Counter(result.outcome for result in results)
    lines.append(", ".join(f"{counts.get(outcome, 0)} {outcome}" for outcome in OUTCOMES))
    return lines


def write_json(path: str, run: dict, results: list[Result], code: int) -> None:
    """The run, the counts, every property's result and the exit code, as JSON."""
    counts = Counter(result.outcome for result in results)
    document = {
        **run,
        "exitstatus": code,
        "counts": {outcome: counts.get(outcome, 0) for outcome in OUTCOMES},
        "properties": [result.as_dict() for result in results],
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(document, indent=1) + "\n")


def write_junit(path: str, run: dict, results: list[Result]) -> None:
    """One <testcase> per property, its failure (with the shrunk counterexample) or skip, the run as <properties>."""
    counts = Counter(result.outcome for result in results)
    suite = ET.Element(
        "testsuite",
        name="properties.distributed",
        tests=str(len(results)),
        failures=str(counts.get("failed", 0)),
        errors="0",
        skipped=str(counts.get("skipped", 0) + counts.get("not run", 0)),
        time=f"{sum(result.seconds for result in results):.2f}",
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in run.items():
        ET.SubElement(properties, "property", name=name, value=str(value))
    for result in results:
        case = ET.SubElement(
            suite, "testcase", classname=f"properties.distributed.{result.family}", name=result.name, time=f"{result.seconds:.2f}"
        )
        if result.outcome == "failed":
            failure = ET.SubElement(case, "failure", message=result.headline)
            failure.text = result.message
        elif result.outcome in ("skipped", "not run"):
            ET.SubElement(case, "skipped", message=result.message)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    root = ET.Element("testsuites")
    root.append(suite)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
