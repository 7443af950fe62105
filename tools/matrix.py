"""Run the suite on several torch versions, one nox session each, and report what changed.

    python -m tools.matrix [VERSION ...]     (default: the oldest supported, the pinned and the newest torch)
    nox -s matrix-VERSION                     (one version; what each version's run is)

Each version runs in the nox session `matrix-VERSION` (`noxfile.py`; uv environments where uv is
installed, virtualenv otherwise): it installs exactly `torch==VERSION` with the extra requirements
`EXTRA_REQUIREMENTS` gives it, then this suite with its `[frameworks]` extra where that resolves
beside that torch; runs `properties.observe`, `tools.fingerprint` and the suite with `--junitxml`,
and writes `matrix/torch-VERSION.{xml,observed.json,fingerprint.json,run.json}` and `matrix.md`
into a fresh run directory, `.matrix/runs/DATE-TIME/` (git-ignored). The report is built from
that directory only: a version with no results there is **not run**, never green. The command
exits 1 when a version did not run, a test failed, a registered deviation XPASSes, or the
numeric fingerprints differ by more than rounding, and prints which. Needs nox (and uv) in the
Python that runs it, never torch: torch is imported only by the suite's own processes.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
OLDEST = "1.13.1"  # the oldest torch the suite supports (pyproject.toml: torch>=1.13)
PINNED = "2.13.0"  # the torch the suite is gated on (README, .ci/run)
RESULTS_ENV = "MATRIX_RESULTS"  # where a nox session writes matrix/ and matrix.md
VERSIONS_ENV = "MATRIX_VERSIONS"  # the versions noxfile.py defines sessions for, when set (space-separated)

# Extra pip requirements per range of torch versions [from, below): the one place they live.
EXTRA_REQUIREMENTS: dict[tuple[str, str], tuple[str, ...]] = {
    ("1.0", "2.3"): ("numpy<2",),  # wheels before 2.3 are built against the numpy 1.x ABI
}
GIGABYTE = 1024**3


def release(text: str) -> tuple[int, int, int]:
    """'2.13.0+cpu' → (2, 13, 0), as properties.versions.parse_version (which needs torch to import)."""
    numbers = [int(part) for part in re.findall(r"\d+", text.split("+")[0])[:3]]
    return tuple(numbers + [0] * (3 - len(numbers)))  # type: ignore[return-value]


def requirements(version: str) -> list[str]:
    """What pip installs for `version`: torch pinned, then the extra requirements of its range."""
    extras = [
        r for (low, below), reqs in EXTRA_REQUIREMENTS.items() if release(low) <= release(version) < release(below) for r in reqs
    ]
    return [f"torch=={version}", *extras]


# ---------------------------------------------------------------- which versions

RELEASE = re.compile(r"^\d+(\.\d+){1,2}$")  # a final release: no local part (+cpu), no rc/dev/post


def index_versions(package: str = "torch") -> list[str]:
    """Every version of `package` the configured package index offers (`pip index versions`, so pip's index settings apply)."""
    command = [sys.executable, "-m", "pip", "index", "versions", package]
    completed = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    found = parse_index_versions(completed.stdout)
    if not found:
        raise RuntimeError(
            f"could not list {package}'s versions with `{' '.join(command[1:])}`: {completed.stderr.strip()[-300:]}"
        )
    return found


def parse_index_versions(text: str) -> list[str]:
    """`pip index versions` output → the versions on its 'Available versions:' line."""
    match = re.search(r"^Available versions:(.*)$", text, re.M)
    return [v.strip() for v in match.group(1).split(",") if v.strip()] if match else []


def releases(offered: Sequence[str]) -> list[str]:
    """The final releases among `offered` (no pre-releases, no local builds) from the oldest supported on, oldest first."""
    found = {v for v in offered if RELEASE.match(v) and release(v) >= release(OLDEST)}
    return sorted(found, key=release)


def newest(offered: Sequence[str]) -> str:
    """The newest final release among `offered`."""
    found = releases(offered)
    if not found:
        raise RuntimeError(f"no torch release from {OLDEST} on among {list(offered)[:10]}")
    return found[-1]


def release_line(offered: Sequence[str]) -> list[str]:
    """The latest patch of every minor release from the oldest supported to the newest, oldest first."""
    latest: dict[tuple[int, int], str] = {}
    for version in releases(offered):
        latest[release(version)[:2]] = version
    return list(latest.values())


def default_versions(offered: Sequence[str]) -> list[str]:
    """The oldest supported torch, the pinned one and the newest release offered."""
    return list(dict.fromkeys([OLDEST, PINNED, newest(offered)]))


def session_versions() -> list[str]:
    """The versions noxfile.py defines a session for: $MATRIX_VERSIONS, else the default set and the release line on the index."""
    named = os.environ.get(VERSIONS_ENV, "").split()
    if named:
        return list(dict.fromkeys(named))
    try:
        offered = index_versions()
    except RuntimeError as error:
        print(f"noxfile: {error}; only the oldest and the pinned torch have sessions", file=sys.stderr)
        return [OLDEST, PINNED]
    return sorted(set(default_versions(offered)) | set(release_line(offered)), key=release)


# ---------------------------------------------------------------- results of one version


@dataclass(frozen=True)
class Outcome:
    """One test's outcome in one version: passed, failed, error, skipped or xfailed, with the message."""

    status: str
    message: str = ""


@dataclass
class VersionResult:
    """Everything the report says about one torch version."""

    version: str
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    observed: dict = field(default_factory=dict)
    fingerprint: dict = field(default_factory=dict)
    install_s: float = 0.0
    test_s: float = 0.0
    probe_s: float = 0.0
    reused: bool = False
    venv_bytes: int = 0
    suite: str = ""
    problem: str = ""
    ran: bool = True
    date: str = ""
    frameworks: str = ""

    def count(self, status: str) -> int:
        """How many tests ended with `status`."""
        return sum(1 for outcome in self.outcomes.values() if outcome.status == status)

    @property
    def green(self) -> bool:
        """Run in this run, installed, probed and tested, with no test failed or in error."""
        return self.ran and not self.problem and bool(self.outcomes) and not (self.count("failed") or self.count("error"))

    def verdict(self) -> str:
        """The summary's verdict cell: green, not run (with why), or red (with the problem)."""
        if not self.ran:
            return f"**not run**{': ' + self.problem if self.problem else ''}"
        return "**green**" if self.green else f"**red**{': ' + self.problem if self.problem else ''}"


SEVERITY = {"passed": 0, "xfailed": 1, "skipped": 2, "failed": 3, "error": 4}


def node_id(classname: str, name: str, root: Optional[Path] = ROOT) -> str:
    """JUnit classname 'tests.meta.test_x.TestY' + name → 'tests/meta/test_x.py::TestY::name'."""
    parts = classname.split(".") if classname else []
    for cut in range(len(parts), 0, -1):
        path = "/".join(parts[:cut]) + ".py"
        if root is not None and (root / path).is_file():
            return "::".join([path, *parts[cut:], name])
    classes = []
    while len(parts) > 1 and parts[-1][:1].isupper():
        classes.insert(0, parts.pop())
    return "::".join(["/".join(parts) + ".py", *classes, name]) if parts else name


def parse_junit(text: str, root: Optional[Path] = ROOT) -> dict[str, Outcome]:
    """pytest's --junitxml output → {node id: Outcome}; a test reported twice keeps its worst outcome."""
    outcomes: dict[str, Outcome] = {}
    for case in ET.fromstring(text).iter("testcase"):
        status, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                status = "failed" if child.tag == "failure" else "error"
                message = child.get("message") or child.text or ""
            elif child.tag == "skipped":
                status = "xfailed" if child.get("type") == "pytest.xfail" else "skipped"
                message = child.get("message") or ""
        key = node_id(case.get("classname", ""), case.get("name", ""), root)
        if key not in outcomes or SEVERITY[status] > SEVERITY[outcomes[key].status]:
            outcomes[key] = Outcome(status, message.strip())
    return outcomes


# ---------------------------------------------------------------- comparing fingerprints

QUANTITIES = ("seeded inputs", "full batch", "accumulated")  # the sections of a tools.fingerprint case
ROUNDOFF = 2.0**-53  # u of float64


def flatten(value: object) -> list[float]:
    """Nested lists of numbers → one flat list (None → empty)."""
    if value is None:
        return []
    if isinstance(value, list):
        return [number for item in value for number in flatten(item)]
    return [float(value)]


@dataclass(frozen=True)
class Difference:
    """The largest |a − b| of one quantity between two versions, and the largest |value| it is relative to."""

    case: str
    quantity: str
    name: str
    first: str
    second: str
    largest: float
    magnitude: float

    @property
    def roundoffs(self) -> float:
        """|Δ| in units of u·max|value|, u = 2⁻⁵³: how many roundings the difference is worth."""
        if self.magnitude == 0:
            return 0.0 if self.largest == 0 else float("inf")
        return self.largest / (ROUNDOFF * self.magnitude)


def differences(prints: Mapping[str, Mapping[str, object]]) -> list[Difference]:
    """Per case, quantity (inputs or a gradient) and name: the largest difference over every pair of versions."""
    found: list[Difference] = []
    labels = list(prints)
    for case in dict.fromkeys(c for p in prints.values() for c in p["cases"]):  # type: ignore[union-attr]
        for quantity in QUANTITIES:
            names = dict.fromkeys(n for p in prints.values() for n in p["cases"].get(case, {}).get(quantity, {}))
            for name in names:
                best: Optional[Difference] = None
                for i, first in enumerate(labels):
                    for second in labels[i + 1 :]:
                        a = flatten(prints[first]["cases"].get(case, {}).get(quantity, {}).get(name))
                        b = flatten(prints[second]["cases"].get(case, {}).get(quantity, {}).get(name))
                        if len(a) != len(b):
                            largest, magnitude = float("inf"), 0.0
                        else:
                            largest = max((abs(p - q) for p, q in zip(a, b)), default=0.0)
                            magnitude = max((abs(v) for v in a + b), default=0.0)
                        if best is None or largest > best.largest:
                            best = Difference(case, quantity, name, first, second, largest, magnitude)
                if best is not None:
                    found.append(best)
    return found


# ---------------------------------------------------------------- the report


def seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"


def cell(outcome: Optional[Outcome]) -> str:
    """A table cell for one outcome: pass, **FAIL**, **ERROR**, skipped (why), xfail, or — when not run."""
    if outcome is None:
        return "—"
    if outcome.status == "skipped":
        reason = outcome.message.replace("|", "\\|").replace("\n", " ")
        reason = re.sub(r"^Skipped: ", "", reason)
        return f"skipped ({reason})" if reason else "skipped"
    return {"passed": "pass", "failed": "**FAIL**", "error": "**ERROR**", "xfailed": "xfail"}[outcome.status]


def shown(value: object) -> str:
    """An observed or documented value as a table cell."""
    if value is None:
        return "n/a"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    return str(value).replace("|", "\\|")


def behaviour_rows(results: Sequence[VersionResult]) -> list[tuple[str, dict]]:
    """(name, {version: record}) for every observed behaviour, in probe order."""
    names: list[str] = []
    by_name: dict[str, dict] = {}
    for result in results:
        for record in result.observed.get("behaviours", []):
            if record["name"] not in by_name:
                names.append(record["name"])
                by_name[record["name"]] = {}
            by_name[record["name"]][result.version] = record
    return [(name, by_name[name]) for name in names]


def render_behaviours(results: Sequence[VersionResult]) -> list[str]:
    """Observed behaviours: those that differ between versions (with what that means), then those that do not."""
    versions = [r.version for r in results]
    header = [
        "| behaviour | documented | " + " | ".join(f"torch {v}" for v in versions) + " |",
        "|---|---|" + "---|" * len(versions),
    ]
    differing, same, disagreements = [], [], []
    notes: dict[str, list[str]] = {}
    for name, records in behaviour_rows(results):
        any_record = next(iter(records.values()))
        documented = (
            f"{shown(any_record['before'])} before {any_record['since']}, {shown(any_record['after'])} from it"
            if "since" in any_record
            else "not in the table"
        )
        cells = []
        for version in versions:
            record = records.get(version)
            if record is None:
                cells.append("—")
                continue
            text = shown(record["observed"])
            if "documented" in record and record["observed"] != record["documented"]:
                text += f" ✗ (documented: {shown(record['documented'])})"
                disagreements.append(
                    f"- torch {version}: {name}: observed {shown(record['observed'])}, "
                    f"the table documents {shown(record['documented'])} ({record.get('source', '')})"
                )
            cells.append(text)
        row = f"| {name} | {documented} | " + " | ".join(cells) + " |"
        if len({json.dumps(record["observed"], sort_keys=True) for record in records.values()}) > 1:
            differing.append(row)
            if any_record.get("consequence"):
                notes.setdefault(any_record["consequence"], []).append(name)
        else:
            same.append(row)
    lines = ["## Behaviour that differs between these versions", ""]
    if len(versions) < 2:
        lines += ["One version only: nothing to compare.", ""]
    lines += [
        "Observed by calling torch in each version's environment (`python -m properties.observe`); "
        "✗ marks an observation that disagrees with `properties/versions.py`.",
        "",
    ]
    lines += (header + differing) if differing else ["No observed behaviour differs."]
    lines += [""]
    if notes:
        lines += ["What the differences mean for code that upgrades:", ""]
        lines += [f"- **{'; '.join(names)}**: {consequence}." for consequence, names in notes.items()] + [""]
    if disagreements:
        lines += ["**Observations that disagree with the version table** (a finding):", ""] + disagreements + [""]
    if same:
        lines += ["### The same in every version", ""] + header + same + [""]
    return lines


DEVIATION = re.compile(r"known deviation '([^']+)'")
XPASS_STRICT = "[XPASS(strict)]"


def deviation_tests(results: Sequence[VersionResult]) -> dict[str, list[str]]:
    """Registered deviation name → the tests that ran as its strict xfail (read from the reasons in any version)."""
    found: dict[str, list[str]] = {}
    for result in results:
        for key, outcome in result.outcomes.items():
            match = DEVIATION.search(outcome.message)
            if match and outcome.status in ("xfailed", "failed"):
                tests = found.setdefault(match.group(1), [])
                if key not in tests:
                    tests.append(key)
    return found


def defect_cell(outcome: Optional[Outcome]) -> str:
    """A known deviation's test in one version: xfail = affected, XPASS = fixed, pass = not affected per the table."""
    if outcome is None:
        return "—"
    if outcome.status == "xfailed":
        return "xfail (affected)"
    if outcome.status == "failed" and outcome.message.startswith(XPASS_STRICT):
        return "**XPASS** (fixed: update properties/defects.py)"
    if outcome.status == "passed":
        return "pass (not affected, as the table says)"
    return cell(outcome)


def render_defects(results: Sequence[VersionResult]) -> list[str]:
    """Each registered torch or framework deviation's strict-xfail tests, per version."""
    versions = [r.version for r in results]
    lines = ["## Known deviations per version", ""]
    found = deviation_tests(results)
    if not found:
        return lines + ["No test ran as a registered deviation's strict xfail in these versions.", ""]
    lines += [
        "Each test that runs as a strict xfail of a registered deviation (`properties/defects.py`, "
        "`properties/frameworks/deviations.py`): xfail = the version is affected; **XPASS** = the behaviour "
        "is fixed there and the table should say so; pass = the table says the version is not affected.",
        "",
        "| deviation | test | " + " | ".join(f"torch {v}" for v in versions) + " |",
        "|---|---|" + "---|" * len(versions),
    ]
    for name, tests in found.items():
        for key in tests:
            cells = " | ".join(defect_cell(r.outcomes.get(key)) for r in results)
            lines.append(f"| {name} | `{key.split('::')[-1]}` | {cells} |")
    return lines + [""]


ROUNDING_LIMIT = 64  # differences up to 64 u·max|g| are rounding; more is a finding


def render_fingerprint(results: Sequence[VersionResult]) -> list[str]:
    """The largest gradient difference between versions, per case, and whether the same seed drew the same inputs."""
    prints = {r.version: r.fingerprint for r in results if r.fingerprint.get("cases")}
    lines = ["## Numeric fingerprint", ""]
    if len(prints) < 2:
        return lines + ["Fewer than two versions produced a fingerprint: nothing to compare.", ""]
    found = differences(prints)
    inputs = [d for d in found if d.quantity == "seeded inputs" and d.largest > 0]
    gradients = [d for d in found if d.quantity != "seeded inputs"]
    lines += [
        f"Float64 gradients of {len(next(iter(prints.values()))['cases'])} fixed cases "
        "(`tools/fingerprint.py`; summed MSE, on exact dyadic inputs that are the same in every version): "
        "the full-batch gradient and the gradient accumulated over fixed micro-batches, compared between every "
        "pair of versions. |Δ| is also given in units of u·max|g|, u = 2⁻⁵³.",
        "",
    ]
    worst = max(gradients, key=lambda d: d.largest, default=None)
    if worst is None or worst.largest == 0:
        lines += ["**Largest difference between versions: 0** — every gradient is bitwise identical.", ""]
    else:
        verdict = (
            "rounding, as expected"
            if worst.roundoffs <= ROUNDING_LIMIT
            else f"**a finding: more than {ROUNDING_LIMIT} u·max|g|, larger than rounding explains**"
        )
        lines += [
            f"**Largest difference between versions: {worst.largest:.3g}** = {worst.roundoffs:.3g} u·max|g| "
            f"({worst.quantity} .grad of {worst.name!r}, {worst.case}; torch {worst.first} vs {worst.second}) "
            f"— {verdict}.",
            "",
        ]
    lines += ["| case | largest \\|Δ\\| full batch | largest \\|Δ\\| accumulated | in u·max\\|g\\| |", "|---|---|---|---|"]
    for case in dict.fromkeys(d.case for d in gradients):
        mine = [d for d in gradients if d.case == case]
        full = max((d.largest for d in mine if d.quantity == "full batch"), default=0.0)
        accumulated = max((d.largest for d in mine if d.quantity == "accumulated"), default=0.0)
        lines.append(f"| {case} | {full:.3g} | {accumulated:.3g} | {max(d.roundoffs for d in mine):.3g} |")
    lines += [""]
    if inputs:
        lines += [
            "**The same seed draws different inputs in these versions** (torch.Generator → randn/randint, "
            "as the suite's Cases use them): the suite's examples differ slightly between versions.",
            "",
        ]
        lines += [f"- {d.case}: {d.name} differs by {d.largest:.3g} (torch {d.first} vs {d.second})" for d in inputs]
    else:
        lines += ["The same seed draws bitwise the same inputs (parameters and data) in every version."]
    return lines + [""]


def xpasses(result: VersionResult) -> list[tuple[str, str]]:
    """(deviation, test) for each registered deviation's strict xfail that passed in this version."""
    found = []
    for key, outcome in result.outcomes.items():
        match = DEVIATION.search(outcome.message)
        if outcome.status == "failed" and outcome.message.startswith(XPASS_STRICT) and match:
            found.append((match.group(1), key))
    return found


def largest_difference(results: Sequence[VersionResult]) -> Optional[Difference]:
    """The largest gradient difference between the fingerprints of any two versions (None with fewer than two)."""
    prints = {r.version: r.fingerprint for r in results if r.fingerprint.get("cases")}
    gradients = [d for d in differences(prints) if d.quantity != "seeded inputs"] if len(prints) > 1 else []
    return max(gradients, key=lambda d: d.roundoffs, default=None)


def findings(results: Sequence[VersionResult]) -> list[str]:
    """Why the matrix is not green, one line each: a version not run or broken, failed tests, an XPASS, a fingerprint beyond rounding."""
    found = []
    for r in results:
        if not r.ran or r.problem:
            found.append(f"torch {r.version}: {'not run' if not r.ran else 'did not finish'}: {r.problem or 'no results'}")
        elif not r.outcomes:
            found.append(f"torch {r.version}: no test results")
        fixed = xpasses(r)
        found += [f"torch {r.version}: registered deviation {name!r} XPASSes in {key} (fixed there?)" for name, key in fixed]
        failed = [k for k, o in r.outcomes.items() if o.status in ("failed", "error") and k not in {key for _, key in fixed}]
        if failed:
            shown_ = ", ".join(failed[:3]) + (f" and {len(failed) - 3} more" if len(failed) > 3 else "")
            found.append(f"torch {r.version}: {len(failed)} test(s) failed: {shown_}")
    worst = largest_difference(results)
    if worst is not None and worst.roundoffs > ROUNDING_LIMIT:
        found.append(
            f"numeric fingerprint: {worst.quantity} .grad of {worst.name!r} ({worst.case}) differs by {worst.roundoffs:.3g} "
            f"u·max|g| > {ROUNDING_LIMIT} between torch {worst.first} and {worst.second}"
        )
    return found


def render_findings(results: Sequence[VersionResult]) -> list[str]:
    """The matrix's verdict: every finding that makes its command exit 1, or that there is none."""
    found = findings(results)
    if not found:
        return ["**Matrix: green** — every version ran and passed; no deviation XPASSes; fingerprints agree to rounding.", ""]
    return ["**Matrix: red** (the command exits 1):", ""] + [f"- {line}" for line in found] + [""]


def first_lines(text: str, count: int = 12) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[:count] + (["…"] if len(lines) > count else []))


def render(results: Sequence[VersionResult], *, command: str, context: Mapping[str, str]) -> str:
    """The whole markdown report for the given versions."""
    versions = [r.version for r in results]
    columns = " | ".join(f"torch {v}" for v in versions)
    rule = "|---|" + "---|" * len(versions)
    lines = ["# Torch version matrix", ""]
    lines += [f"Produced by `{command}`" + "".join(f"; {k}: {v}" for k, v in context.items()) + ".", ""]
    suites = {r.suite for r in results if r.suite}
    if len(suites) > 1:
        lines += [
            "**The suite's source changed between these versions' runs** ("
            + ", ".join(f"torch {r.version}: {r.suite}" for r in results if r.suite)
            + "): outcomes that differ may come from "
            "the change, not from torch. Rerun to compare like with like.",
            "",
        ]
    lines += ["## Summary", "", f"| | {columns} |", rule]

    def row(label: str, values: Sequence[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(values) + " |")

    env = [r.observed.get("environment", {}) for r in results]
    row("verdict", [r.verdict() for r in results])
    row("ran on", [r.date or "—" for r in results])
    row("torch installed", [str(e.get("torch", "—")) for e in env])
    row("numpy, hypothesis", [f"{e.get('numpy', '—')}, {e.get('hypothesis', '—')}" if e else "—" for e in env])
    row("extra requirements", [", ".join(requirements(v)[1:]) or "none" for v in versions])
    row("`[frameworks]` extra", [r.frameworks.replace("|", "\\|") or "—" for r in results])
    for status in ("passed", "failed", "error", "skipped", "xfailed"):
        if status in ("passed", "failed", "skipped") or any(r.count(status) for r in results):
            row(status, [str(r.count(status)) for r in results])
    row("install time", [seconds(r.install_s) + (" (reused)" if r.reused else "") for r in results])
    row("test time", [seconds(r.test_s) for r in results])
    row("probe time (observe + fingerprint)", [seconds(r.probe_s) for r in results])
    row("environment size", [f"{r.venv_bytes / GIGABYTE:.1f} GB" if r.venv_bytes else "—" for r in results])
    lines += [""]
    lines += render_findings(results)
    lines += render_behaviours(results)
    lines += render_defects(results)
    lines += render_fingerprint(results)

    every = sorted({k for r in results for k in r.outcomes})
    differing = [k for k in every if len({(r.outcomes.get(k) or Outcome("absent")).status for r in results}) > 1]
    lines += ["## Properties whose outcome differs between versions", ""]
    lines += [
        "— : not collected in that version (absent from the suite then, or parametrized over what that torch "
        "supports, such as its CPU dtypes).",
        "",
    ]
    if differing:
        lines += [f"| test | {columns} |", rule]
        lines += [f"| `{k}` | " + " | ".join(cell(r.outcomes.get(k)) for r in results) + " |" for k in differing]
    else:
        lines += ["None: every test has the same outcome in every version."]
    lines += ["", "## Every test", "", f"| test | {columns} |", rule]
    lines += [f"| `{k}` | " + " | ".join(cell(r.outcomes.get(k)) for r in results) + " |" for k in every]
    lines += [""]

    failures = [(r.version, k, o) for r in results for k, o in r.outcomes.items() if o.status in ("failed", "error")]
    if failures:
        lines += ["## Failures", ""]
        for version, key, outcome in failures:
            lines += [f"### torch {version}: `{key}`", "", "```", first_lines(outcome.message), "```", ""]
    problems = [r for r in results if r.problem or not r.ran]
    if problems:
        lines += ["## Versions that did not run", ""]
        lines += [f"- torch {r.version}: {r.problem or 'not run'}" for r in problems] + [""]
    lines += ["## Raw results", ""]
    lines += [
        f"- `matrix/torch-{v}.xml` (JUnit), `matrix/torch-{v}.observed.json`, `matrix/torch-{v}.fingerprint.json`"
        for v in versions
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- one version in a nox session

RAW = ("xml", "observed.json", "fingerprint.json", "run.json")


def raw(results: Path, version: str, suffix: str) -> Path:
    """RESULTS/matrix/torch-VERSION.SUFFIX."""
    return results / "matrix" / f"torch-{version}.{suffix}"


def suite_digest(root: Path = ROOT) -> str:
    """A short hash of the suite's source (properties/, tests/, conftest.py, pyproject.toml) as it is now."""
    digest = hashlib.sha256()
    files = [root / "conftest.py", root / "pyproject.toml", *root.glob("properties/**/*.py"), *root.glob("tests/**/*.py")]
    for path in sorted(p for p in files if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def directory_bytes(path: Path) -> int:
    """The bytes of the files under `path` (links not followed)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def distribution_version(name: str) -> Optional[str]:
    """The installed version of distribution `name` in the running Python (None if absent); nothing imported."""
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def settings() -> dict[str, str]:
    """The run's settings from the environment: Hypothesis profile and seed, pytest-xdist -n, an extra index for torch."""
    return {
        "profile": os.environ.get("MATRIX_PROFILE", "dev"),
        "seed": os.environ.get("MATRIX_SEED", "0"),
        "workers": os.environ.get("MATRIX_WORKERS", "auto"),
        "torch_index": os.environ.get("MATRIX_TORCH_INDEX", ""),
    }


def empty_constraints(results: Path) -> Path:
    """An empty constraints file: PIP_CONSTRAINT pointing here lifts any cap a pip configuration sets."""
    path = results / "matrix" / "no-constraints.txt"
    path.write_text("")
    return path


def installer(session) -> list[str]:
    """The command that installs into the session's environment: uv pip (uv backend) or the environment's pip."""
    if session.venv_backend == "uv":
        return [
            sys.executable,
            "-m",
            "uv",
            "pip",
            "install",
            "--python",
            str(Path(session.virtualenv.location) / "bin" / "python"),
        ]
    return [str(Path(session.virtualenv.location) / "bin" / "python"), "-m", "pip", "install"]


def frameworks_conflict(session, version: str, env: Mapping[str, str]) -> str:
    """'' when `torch==version` and this suite's [frameworks] extra resolve together; else the resolver's reason."""
    command = installer(session) + ["--dry-run", *requirements(version), "-e", f"{ROOT}[frameworks]"]
    merged = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    completed = subprocess.run(command, capture_output=True, text=True, env=merged)
    if completed.returncode == 0:
        return ""
    return conflict_reason(completed.stdout + completed.stderr)


def conflict_reason(text: str) -> str:
    """The resolver's reason in a line: 'pytorch-lightning>=2.6.6 needs torch>=2.1.0' (uv and pip), else its last line."""
    found = re.findall(r"([A-Za-z][A-Za-z0-9_.\[\]-]*(?:(?:==|>=| )[0-9][0-9.]*)?) depends on (torch[<>=!~0-9.,]*[0-9])", text)
    found = [(who, what) for who, what in found if not who.startswith("grad-accumulation-properties")]
    if found:
        return "; ".join(dict.fromkeys(f"{who} needs {what}" for who, what in found))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "the resolver gave no reason"


def install(session, version: str, results: Path, options: Mapping[str, str]) -> str:
    """Install exactly torch==version (and its extra requirements), then the suite, with [frameworks] where it resolves; what became of [frameworks]."""
    env = {"PIP_CONSTRAINT": str(empty_constraints(results)), "UV_CONSTRAINT": None, "PIP_FIND_LINKS": None}
    index = ["--extra-index-url", options["torch_index"]] if options["torch_index"] else []
    session.install(*requirements(version), *index, env=env)
    conflict = frameworks_conflict(session, version, env)
    extra = "" if conflict else "[frameworks]"
    session.install(*requirements(version), "-e", f"{ROOT}{extra}", env=env)
    return "installed" if not conflict else f"not installed: does not resolve beside torch {version} ({conflict})"


REFUSING_TORCH = (
    "from properties.frameworks.configuration import FRAMEWORKS as F\n"
    "print('; '.join(f'{f.distribution} {f.version()} needs torch{f.torch_floor()}' for f in F.values() "
    "if f.version() and f.torch_refused()))"
)


def frameworks_refusing_torch(session, python: str) -> str:
    """The installed frameworks whose declared torch floor the installed torch is below ('transformers 5.24.0 needs
    torch>=2.6'): a floor under an optional extra, which the resolver does not apply, so [frameworks] resolved."""
    from nox.command import CommandFailed

    try:
        lines = (session.run(python, "-c", REFUSING_TORCH, silent=True, log=False) or "").strip().splitlines()
    except CommandFailed as error:  # the tests still run; their own skips say why
        return f"could not read the frameworks' torch floors ({error.reason})"
    return lines[-1] if lines else ""


def passthrough_frameworks() -> str:
    """What the running Python has of the [frameworks] extra."""
    found = [(name, distribution_version(name)) for name in ("transformers", "pytorch-lightning", "accelerate")]
    present = [f"{name} {v}" for name, v in found if v]
    return f"the running Python's: {', '.join(present)}" if present else "not installed in the running Python"


def shown_path(path: Path) -> str:
    """`path` relative to the clone when inside it (as the report shows it), else as it is."""
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def run_session(session, version: str, results: Path) -> None:
    """One version in a nox session: install (unless it has no environment), probe, test; write its raw results and the report."""
    from nox.command import CommandFailed

    options = settings()
    (results / "matrix").mkdir(parents=True, exist_ok=True)
    for suffix in RAW:
        raw(results, version, suffix).unlink(missing_ok=True)
    passthrough = session.venv_backend == "none"
    python = sys.executable if passthrough else "python"
    location = None if passthrough else Path(session.virtualenv.location)
    record: dict[str, object] = {"version": version, "date": datetime.date.today().isoformat(), "problem": ""}
    record.update(profile=options["profile"], seed=options["seed"], pytest_args=list(session.posargs), suite=suite_digest())
    record.update(reused=passthrough, environment=shown_path(location) if location else "", backend=session.venv_backend)
    started = time.perf_counter()
    try:
        record["frameworks"] = passthrough_frameworks() if passthrough else install(session, version, results, options)
    except CommandFailed as error:
        record["problem"] = f"could not install torch=={version} and the suite ({error.reason})"
    except Exception as error:  # the record must say why, whatever went wrong
        record["problem"] = f"the session raised {type(error).__name__}: {error}"
    record["install_s"] = round(time.perf_counter() - started, 1)
    if not record["problem"]:
        record["problem"] = torch_mismatch(session, python, version)
    if not record["problem"] and record.get("frameworks") == "installed":
        refused = frameworks_refusing_torch(session, python)
        record["frameworks"] += f"; {refused} (their tests skip)" if refused else ""
    if not record["problem"]:
        record.update(probe_and_test(session, python, version, results, options))
    record["venv_bytes"] = directory_bytes(location) if location else 0
    record["python"] = platform.python_version()
    raw(results, version, "run.json").write_text(json.dumps(record, indent=2) + "\n")
    found = render_directory(results, versions_in(results), command=f"nox -s matrix-{version}")
    if found:
        session.error("the matrix is not green:\n  " + "\n  ".join(found))


def torch_mismatch(session, python: str, version: str) -> str:
    """'' when the session's Python has exactly torch `version` (any local build of it); else what it has."""
    script = "import importlib.metadata as m\ntry: print(m.version('torch'))\nexcept Exception: print('none')"
    found = session.run(python, "-c", script, silent=True, log=False).strip().splitlines()[-1]
    if found != "none" and release(found) == release(version) and RELEASE.match(found.split("+")[0]):
        return ""
    return f"asked for torch {version}, the environment has {found}"


def probe_and_test(session, python: str, version: str, results: Path, options: Mapping[str, str]) -> dict[str, object]:
    """observe, fingerprint, then the suite with --junitxml, in the session's Python; the seconds each took and any problem."""
    from nox.command import CommandFailed

    env = {"HYPOTHESIS_PROFILE": options["profile"], "PYTHONPATH": None}
    env["HYPOTHESIS_STORAGE_DIRECTORY"] = str(results / "hypothesis" / f"torch-{version}")
    problem, started = "", time.perf_counter()
    for module, suffix in (("properties.observe", "observed.json"), ("tools.fingerprint", "fingerprint.json")):
        try:
            session.run(python, "-m", module, "--output", str(raw(results, version, suffix)), env=env)
        except CommandFailed as error:
            problem = problem or f"{module} failed ({error.reason})"
    probe_s, started = time.perf_counter() - started, time.perf_counter()
    command = [python, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-o", "junit_family=xunit2"]
    command += [f"--junitxml={raw(results, version, 'xml')}", f"--hypothesis-seed={options['seed']}"]
    command += ["-n", options["workers"]] if options["workers"] not in ("", "0") else []
    try:
        session.run(*command, *session.posargs, env=env, success_codes=[0, 1])
    except CommandFailed as error:
        problem = problem or f"pytest failed to run ({error.reason})"
    return {"probe_s": round(probe_s, 1), "test_s": round(time.perf_counter() - started, 1), "problem": problem}


# ---------------------------------------------------------------- reading results and rendering


def load_result(version: str, results: Path) -> VersionResult:
    """A version's results as its session left them in `results` (not run when it left none)."""
    result = VersionResult(version)

    def read(suffix: str) -> Optional[str]:
        path = raw(results, version, suffix)
        return path.read_text(encoding="utf-8") if path.exists() else None

    record = json.loads(read("run.json") or "{}")
    if not record:
        result.ran, result.problem = False, f"no results in {results / 'matrix'}"
        return result
    for name in ("install_s", "test_s", "probe_s", "reused", "venv_bytes", "suite", "problem", "date", "frameworks"):
        if name in record:
            setattr(result, name, record[name])
    result.observed = json.loads(read("observed.json") or "{}")
    result.fingerprint = json.loads(read("fingerprint.json") or "{}")
    xml = read("xml")
    if xml:
        result.outcomes = parse_junit(xml)
    elif not result.problem:
        result.problem = "no test results"
    return result


def versions_in(results: Path) -> list[str]:
    """The versions with a run record in `results`, oldest first."""
    found = [p.name[len("torch-") : -len(".run.json")] for p in (results / "matrix").glob("torch-*.run.json")]
    return sorted(found, key=release)


def render_directory(
    results: Path, versions: Sequence[str], *, command: str, context: Optional[Mapping[str, str]] = None
) -> list[str]:
    """Write results/matrix.md for `versions` from what `results` holds, print one line per version; the findings."""
    loaded = [load_result(version, results) for version in versions]
    runs = [json.loads(raw(results, v, "run.json").read_text()) for v in versions if raw(results, v, "run.json").exists()]
    recorded = runs[0] if runs else settings()
    pytest_args = recorded.get("pytest_args", [])
    header = {
        "date": datetime.date.today().isoformat(),
        "Python": recorded.get("python", platform.python_version()),
        "Hypothesis profile": f"{recorded.get('profile')}, --hypothesis-seed={recorded.get('seed')}",
        **(context or {}),
    }
    command += " -- " + " ".join(pytest_args) if pytest_args else ""
    (results / "matrix.md").write_text(render(loaded, command=command, context=header), encoding="utf-8")
    for r in loaded:
        state = "not run" if not r.ran else ("green" if r.green else "RED")
        print(
            f"torch {r.version}: {state}; {r.count('passed')} passed, {r.count('failed')} failed, {r.count('error')} errors, "
            f"{r.count('skipped')} skipped; install {seconds(r.install_s)}, tests {seconds(r.test_s)}, probes {seconds(r.probe_s)}"
        )
    print(f"report: {results / 'matrix.md'}")
    return findings(loaded)


# ---------------------------------------------------------------- the front door


def nox_command(version: str, options: argparse.Namespace) -> list[str]:
    """`nox -s matrix-VERSION` from the running Python, environments under CACHE/nox, reused when there."""
    command = [sys.executable, "-m", "nox", "--noxfile", str(ROOT / "noxfile.py"), "--envdir", str(Path(options.cache) / "nox")]
    return command + ["--reuse-venv", "yes", "-s", f"matrix-{version}", "--", *options.pytest_args]


def runs_here(version: str, options: argparse.Namespace) -> bool:
    """Whether the running Python has torch `version` and this suite, so the session needs no environment of its own."""
    torch = distribution_version("torch")
    if options.no_running_python or torch is None or release(torch) != release(version):
        return False
    return distribution_version("grad-accumulation-properties") is not None


def run_version(version: str, results: Path, options: argparse.Namespace) -> None:
    """One version's nox session, its output in CACHE/logs; its environment removed afterwards when asked."""
    env = {**os.environ, VERSIONS_ENV: version, RESULTS_ENV: str(results), "MATRIX_PROFILE": options.profile}
    env.update(MATRIX_SEED=options.seed, MATRIX_WORKERS=options.workers, MATRIX_TORCH_INDEX=options.torch_index)
    if runs_here(version, options):
        env["NOX_DEFAULT_VENV_BACKEND"] = "none"
    log = Path(options.cache) / "logs" / f"torch-{version}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"torch {version}: {' '.join(nox_command(version, options)[1:])} (log: {log})", flush=True)
    with log.open("w", encoding="utf-8") as handle:
        subprocess.run(nox_command(version, options), stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    record = raw(results, version, "run.json")
    location = json.loads(record.read_text()).get("environment", "") if record.exists() else ""
    if options.remove and location:
        shutil.rmtree(ROOT / location, ignore_errors=True)
        print(f"torch {version}: removed {ROOT / location}", flush=True)


def latest_run(cache: Path) -> Optional[Path]:
    """The newest run directory under CACHE/runs (None on a fresh checkout)."""
    runs = sorted(p for p in (cache / "runs").glob("*") if p.is_dir())
    return runs[-1] if runs else None


def chosen_versions(options: argparse.Namespace, results: Optional[Path]) -> list[str]:
    """The named versions; else, re-rendering, those the run meant to run; else --all's release line or the default set."""
    if options.versions:
        return list(dict.fromkeys(options.versions))
    planned = results / "versions.txt" if results else None
    if options.render_only and planned and planned.exists():
        return planned.read_text().split()
    offered = index_versions()
    return release_line(offered) if options.all else default_versions(offered)


def update_reports(results: Path, reports: Path) -> None:
    """Replace the committed raw results and matrix.md with this run's, and only this run's."""
    (reports / "matrix").mkdir(parents=True, exist_ok=True)
    for old in (reports / "matrix").glob("torch-*"):
        old.unlink()
    for new in (results / "matrix").glob("torch-*"):
        if new.name.endswith(tuple(RAW)):
            copy_relative(new, reports / "matrix" / new.name)
    copy_relative(results / "matrix.md", reports / "matrix.md")


def copy_relative(source: Path, target: Path) -> None:
    """Copy a text file, paths inside the clone (tracebacks, logs) written relative to it."""
    target.write_text(source.read_text(encoding="utf-8").replace(f"{ROOT}/", ""), encoding="utf-8")


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """The command line; arguments after -- go to pytest."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.matrix",
        description=__doc__.splitlines()[0],
        epilog="Arguments after -- go to pytest, e.g. -- -k zero_grad",
    )
    parser.add_argument("versions", nargs="*", help=f"torch versions (default: {OLDEST}, {PINNED} and the newest on the index)")
    parser.add_argument("--all", action="store_true", help=f"the latest patch of every minor release from {OLDEST} to the newest")
    parser.add_argument("--list", action="store_true", help="only print the versions that would run")
    parser.add_argument("--github-output", help="with --list: append torch=<JSON list> and list=<versions> to this file")
    parser.add_argument("--keep", action="store_true", help="with --all: keep each environment (default: removed after its run)")
    parser.add_argument("--remove", action="store_true", help="remove each environment after its run")
    parser.add_argument(
        "--cache", default=str(ROOT / ".matrix"), help="environments, logs and runs live here (default: %(default)s)"
    )
    parser.add_argument(
        "--results", help="the run directory (default: a new CACHE/runs/DATE-TIME; with --render-only, the latest)"
    )
    parser.add_argument("--update-reports", action="store_true", help="then copy this run's results into the committed reports/")
    parser.add_argument(
        "--render-only", action="store_true", help="only rewrite matrix.md from the results the run directory holds"
    )
    parser.add_argument("--no-running-python", action="store_true", help="never run a version in the running Python")
    parser.add_argument("--profile", default="dev", help="Hypothesis profile (default: %(default)s)")
    parser.add_argument("--seed", default="0", help="--hypothesis-seed, the same for every version (default: 0)")
    parser.add_argument("--workers", default="auto", help="pytest-xdist -n (0: no xdist; default: auto)")
    parser.add_argument("--torch-index", default="", help="extra index for torch, e.g. https://download.pytorch.org/whl/cpu")
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    options = parser.parse_args(argv[:cut])
    options.pytest_args = tuple(argv[cut + 1 :])
    options.remove = options.remove or (options.all and not options.keep)
    return options


def github_output(versions: Sequence[str], path: str) -> None:
    """Append the versions as GitHub Actions step outputs: torch (a JSON list, for a job matrix) and list (space-separated)."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(f"torch={json.dumps(list(versions))}\nlist={' '.join(versions)}\n")


def deliver_sigint() -> None:
    """Let SIGINT reach the sessions' processes even when this one was started with it ignored (a shell's `cmd &`)."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run (or, --render-only, re-render) the matrix; 1 when a version did not run, failed, XPASSes or its fingerprint differs."""
    options = parse_args(argv)
    cache = Path(options.cache).resolve()
    if options.render_only:
        results = Path(options.results).resolve() if options.results else latest_run(cache)
    else:
        results = (
            Path(options.results).resolve()
            if options.results
            else cache / "runs" / datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        )
    versions = chosen_versions(options, results)
    if options.list:
        print(" ".join(versions))
        if options.github_output:
            github_output(versions, options.github_output)
        return 0
    if results is None:
        results = cache / "empty-run"
        print(f"no run directory under {cache / 'runs'}: nothing has run", flush=True)
    started = time.perf_counter()
    if not options.render_only:
        deliver_sigint()  # the suite checks how a run stops on SIGINT: an ignored SIGINT would be inherited
        cache.mkdir(parents=True, exist_ok=True)
        (cache / ".gitignore").write_text("*\n")
        (results / "matrix").mkdir(parents=True, exist_ok=True)
        (results / "versions.txt").write_text(" ".join(versions) + "\n")
        for version in versions:
            run_version(version, results, options)
    context = {} if options.render_only else {"total time": seconds(time.perf_counter() - started)}
    command = "python -m tools.matrix " + ("--all" if options.all and not options.versions else " ".join(versions))
    (results / "matrix").mkdir(parents=True, exist_ok=True)
    found = render_directory(results, versions, command=command, context=context)
    if options.update_reports:
        update_reports(results, ROOT / "reports")
        print(f"copied into {ROOT / 'reports'}")
    for line in found:
        print(f"matrix not green: {line}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
