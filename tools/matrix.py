"""Run the suite on several torch versions, each in its own virtual environment, and report what changed.

    python -m tools.matrix [VERSION ...]          (default: 1.13.1 2.13.0 2.14.1)

For each version: create or reuse `.matrix/venvs/torch-VERSION`, install `torch==VERSION` with the
extra requirements `EXTRA_REQUIREMENTS` gives that version, then this suite (editable); run
`properties.observe` and `tools.fingerprint` there, and the suite with `--junitxml`. Then
write `matrix.md` and, beside it, `matrix/torch-VERSION.{xml,observed.json,fingerprint.json}`
into a run directory, `.matrix/runs/DATE-TIME/` (git-ignored), or into the committed `reports/`
with `--update-reports`. A reused environment only reinstalls the suite; a version that the
running Python already has (with this suite installed) runs there, with no environment at all.
Needs nothing but the standard library in the Python that runs it; torch is imported only by
the suite's own processes.
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
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VERSIONS = ("1.13.1", "2.13.0", "2.14.1")

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

    def count(self, status: str) -> int:
        return sum(1 for outcome in self.outcomes.values() if outcome.status == status)

    @property
    def green(self) -> bool:
        """Installed, probed and tested, with no test failed or in error."""
        return not self.problem and bool(self.outcomes) and not (self.count("failed") or self.count("error"))


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
    row("verdict", ["**green**" if r.green else f"**red**{': ' + r.problem if r.problem else ''}" for r in results])
    row("torch installed", [str(e.get("torch", "—")) for e in env])
    row("numpy, hypothesis", [f"{e.get('numpy', '—')}, {e.get('hypothesis', '—')}" if e else "—" for e in env])
    row("extra requirements", [", ".join(requirements(v)[1:]) or "none" for v in versions])
    for status in ("passed", "failed", "error", "skipped", "xfailed"):
        if status in ("passed", "failed", "skipped") or any(r.count(status) for r in results):
            row(status, [str(r.count(status)) for r in results])
    row("install time", [seconds(r.install_s) + (" (reused)" if r.reused else "") for r in results])
    row("test time", [seconds(r.test_s) for r in results])
    row("probe time (observe + fingerprint)", [seconds(r.probe_s) for r in results])
    row("environment size", [f"{r.venv_bytes / GIGABYTE:.1f} GB" if r.venv_bytes else "—" for r in results])
    lines += [""]

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
    problems = [r for r in results if r.problem]
    if problems:
        lines += ["## Versions that did not run", ""] + [f"- torch {r.version}: {r.problem}" for r in problems] + [""]
    lines += ["## Raw results", ""]
    lines += [
        f"- `matrix/torch-{v}.xml` (JUnit), `matrix/torch-{v}.observed.json`, `matrix/torch-{v}.fingerprint.json`"
        for v in versions
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- running a version


@dataclass(frozen=True)
class Options:
    """How to run: where environments and reports go, which interpreter, Hypothesis profile and seed, pytest's -n."""

    cache: Path
    reports: Path
    python: str
    profile: str
    seed: str
    workers: str
    torch_index: str
    reinstall: bool
    render_only: bool
    min_free_gb: float
    pytest_args: tuple[str, ...]
    here: bool = True

    def raw(self, version: str, suffix: str) -> Path:
        """reports/matrix/torch-VERSION.SUFFIX."""
        return self.reports / "matrix" / f"torch-{version}.{suffix}"


def run(command: Sequence[str], log: Path, **kwargs) -> int:
    """Run `command`, appending its output to `log`; its exit status."""
    with log.open("a", encoding="utf-8") as handle:
        handle.write(f"$ {' '.join(command)}\n")
        handle.flush()
        return subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, **kwargs).returncode


def tail(log: Path, count: int = 15) -> str:
    return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-count:])


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def suite_digest(root: Path = ROOT) -> str:
    """A short hash of the suite's source (properties/, tests/, conftest.py, pyproject.toml) as it is now."""
    digest = hashlib.sha256()
    files = [root / "conftest.py", root / "pyproject.toml", *root.glob("properties/**/*.py"), *root.glob("tests/**/*.py")]
    for path in sorted(p for p in files if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def installed_torch(python: Path) -> Optional[str]:
    """The torch version installed in the environment of `python` (read from its metadata, torch not imported)."""
    if not python.exists():
        return None
    script = "import importlib.metadata as m\ntry: print(m.version('torch'))\nexcept Exception: pass"
    output = subprocess.run([str(python), "-c", script], capture_output=True, text=True).stdout.strip()
    return output or None


def suite_installed(python: str) -> bool:
    """Whether `python` has this suite installed (so that its pytest plugin and profiles load)."""
    script = "import importlib.metadata as m\ntry: m.distribution('grad-accumulation-properties'); print('yes')\nexcept Exception: pass"
    return subprocess.run([python, "-c", script], capture_output=True, text=True).stdout.strip() == "yes"


def running_environment(version: str, options: Options) -> Optional[Path]:
    """The running Python, when it already has torch `version` and this suite installed (and --reinstall was not asked)."""
    if options.reinstall or not options.here:
        return None
    current = installed_torch(Path(sys.executable))
    if current is None or release(current) != release(version) or not suite_installed(sys.executable):
        return None
    return Path(sys.executable)


def prepare(version: str, options: Options, result: VersionResult, log: Path) -> Optional[Path]:
    """The running Python if it has the version; else create or reuse its environment, install torch (unless there) and the suite."""
    here = running_environment(version, options)
    if here is not None:
        result.reused = True
        return here
    venv = options.cache / "venvs" / f"torch-{version}"
    python = venv / "bin" / "python"
    wanted = requirements(version)
    marker = venv / "matrix-requirements.txt"
    current = installed_torch(python)
    result.reused = (
        not options.reinstall
        and current is not None
        and release(current) == release(version)
        and marker.exists()
        and marker.read_text().split() == wanted
    )
    if not result.reused:
        free = shutil.disk_usage(options.cache).free / GIGABYTE
        if current is None and free < options.min_free_gb:
            result.problem = f"only {free:.1f} GB free under {options.cache} (need {options.min_free_gb:g})"
            return None
        if not python.exists() and run([options.python, "-m", "venv", str(venv)], log):
            result.problem = f"could not create {venv}: {tail(log, 3)}"
            return None
        index = ["--extra-index-url", options.torch_index] if options.torch_index else []
        if run([str(python), "-m", "pip", "install", *index, *wanted], log):
            result.problem = f"pip could not install {' '.join(wanted)} (see {log})"
            return None
        marker.write_text("\n".join(wanted) + "\n")
    constraints = venv / "matrix-constraints.txt"
    constraints.write_text("\n".join(wanted) + "\n")
    if run([str(python), "-m", "pip", "install", "-c", str(constraints), "-e", str(ROOT)], log):
        result.problem = f"pip could not install the suite (see {log})"
        return None
    return python


def probe_and_test(python: Path, version: str, options: Options, result: VersionResult, log: Path) -> None:
    """In the version's environment: observe, fingerprint, then the suite with --junitxml; timed into `result`."""
    env = {
        **os.environ,
        "HYPOTHESIS_PROFILE": options.profile,
        "HYPOTHESIS_STORAGE_DIRECTORY": str(options.cache / "hypothesis" / f"torch-{version}"),
    }
    env.pop("PYTHONPATH", None)
    started = time.perf_counter()
    for module, suffix in (("properties.observe", "observed.json"), ("tools.fingerprint", "fingerprint.json")):
        if run([str(python), "-m", module, "--output", str(options.raw(version, suffix))], log, cwd=ROOT, env=env):
            result.problem = f"{module} failed: {tail(log, 3)}"
    result.probe_s = time.perf_counter() - started
    command = [
        str(python),
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        "-o",
        "junit_family=xunit2",
        f"--junitxml={options.raw(version, 'xml')}",
        f"--hypothesis-seed={options.seed}",
    ]
    command += ["-n", options.workers] if options.workers not in ("", "0") else []
    result.suite = suite_digest()
    started = time.perf_counter()
    status = run(command + list(options.pytest_args), log, cwd=ROOT, env=env)
    result.test_s = time.perf_counter() - started
    if status not in (0, 1) and not result.problem:
        result.problem = f"pytest exited {status}: {tail(log, 3)}"


def where(python: Path, result: VersionResult) -> str:
    """How the version's Python was had: the running one, a reused environment, or a new install."""
    if python == Path(sys.executable):
        return "the running Python has it"
    return "reused, suite reinstalled" if result.reused else "installed"


def run_version(version: str, options: Options, log_dir: Path) -> None:
    """Install (or reuse), probe and test one version; write its raw results under reports/matrix/."""
    result = VersionResult(version)
    log = log_dir / f"torch-{version}.log"
    log.write_text("")
    for suffix in ("xml", "observed.json", "fingerprint.json", "run.json"):
        options.raw(version, suffix).unlink(missing_ok=True)
    print(f"torch {version}: preparing {options.cache / 'venvs' / f'torch-{version}'}", flush=True)
    started = time.perf_counter()
    python = prepare(version, options, result, log)
    result.install_s = time.perf_counter() - started
    if python is not None:
        print(
            f"torch {version}: {where(python, result)} in {seconds(result.install_s)}",
            flush=True,
        )
        probe_and_test(python, version, options, result, log)
        result.venv_bytes = 0 if python == Path(sys.executable) else directory_bytes(python.parent.parent)
        print(
            f"torch {version}: probed in {seconds(result.probe_s)}, tested in {seconds(result.test_s)} (log: {log})", flush=True
        )
    record = {
        "install_s": round(result.install_s, 1),
        "test_s": round(result.test_s, 1),
        "probe_s": round(result.probe_s, 1),
        "reused": result.reused,
        "venv_bytes": result.venv_bytes,
        "suite": result.suite,
        "problem": result.problem,
        "profile": options.profile,
        "seed": options.seed,
        "pytest_args": list(options.pytest_args),
        "python": platform.python_version(),
        "log": str(log.relative_to(ROOT) if log.is_relative_to(ROOT) else log),
    }
    options.raw(version, "run.json").write_text(json.dumps(record, indent=2) + "\n")
    if result.problem:
        print(f"torch {version}: {result.problem}\n{tail(log)}", flush=True)


def load_result(version: str, options: Options) -> VersionResult:
    """A version's results as `run_version` left them under reports/matrix/ (what is missing stays empty)."""
    result = VersionResult(version)

    def read(suffix: str):
        path = options.raw(version, suffix)
        return path.read_text(encoding="utf-8") if path.exists() else None

    record = json.loads(read("run.json") or "{}")
    for name in ("install_s", "test_s", "probe_s", "reused", "venv_bytes", "suite", "problem"):
        if name in record:
            setattr(result, name, record[name])
    result.observed = json.loads(read("observed.json") or "{}")
    result.fingerprint = json.loads(read("fingerprint.json") or "{}")
    xml = read("xml")
    if xml:
        result.outcomes = parse_junit(xml)
    elif not result.problem:
        result.problem = f"no test results in {options.raw(version, 'xml').parent}" if record else "not run"
    return result


def parse_args(argv: Optional[Sequence[str]]) -> tuple[list[str], Options]:
    parser = argparse.ArgumentParser(
        prog="python -m tools.matrix",
        description=__doc__.splitlines()[0],
        epilog="Arguments after -- go to pytest, e.g. -- -k zero_grad",
    )
    parser.add_argument(
        "versions",
        nargs="*",
        help=f"torch versions (default: {' '.join(DEFAULT_VERSIONS)}; "
        "with --render-only, those with results in the reports folder)",
    )
    parser.add_argument("--cache", default=str(ROOT / ".matrix"), help="environments live here (default: %(default)s)")
    parser.add_argument(
        "--reports",
        default=None,
        help="matrix.md and matrix/ go here (default: a new .matrix/runs/DATE-TIME/; reports/ with --update-reports or --render-only)",
    )
    parser.add_argument("--update-reports", action="store_true", help="write the committed reports/matrix.md and reports/matrix/")
    parser.add_argument("--no-running-python", action="store_true", help="never run a version in the running Python")
    parser.add_argument("--python", default=sys.executable, help="interpreter the environments are made from")
    parser.add_argument("--profile", default="dev", help="Hypothesis profile (default: %(default)s)")
    parser.add_argument("--seed", default="0", help="--hypothesis-seed, the same for every version (default: 0)")
    parser.add_argument("--workers", default="auto", help="pytest-xdist -n (0: no xdist; default: auto)")
    parser.add_argument("--torch-index", default="", help="extra pip index for torch, e.g. https://download.pytorch.org/whl/cpu")
    parser.add_argument("--reinstall", action="store_true", help="reinstall torch even where an environment has it")
    parser.add_argument("--render-only", action="store_true", help="only rewrite matrix.md from the raw results")
    parser.add_argument("--min-free-gb", type=float, default=8.0, help="refuse a new install below this free disk")
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    if args.reports:
        reports = Path(args.reports)
    elif args.update_reports or args.render_only:
        reports = ROOT / "reports"
    else:
        reports = Path(args.cache) / "runs" / datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    options = Options(
        Path(args.cache).resolve(),
        reports.resolve(),
        args.python,
        args.profile,
        args.seed,
        args.workers,
        args.torch_index,
        args.reinstall,
        args.render_only,
        args.min_free_gb,
        tuple(argv[cut + 1 :]),
        not args.no_running_python,
    )
    return list(dict.fromkeys(args.versions or default_versions(options))), options


def default_versions(options: Options) -> list[str]:
    """DEFAULT_VERSIONS; with --render-only, the versions that have results in the reports folder, oldest first."""
    if not options.render_only:
        return list(DEFAULT_VERSIONS)
    found = [p.name[len("torch-") : -len(".run.json")] for p in (options.reports / "matrix").glob("torch-*.run.json")]
    return sorted(found, key=release) or list(DEFAULT_VERSIONS)


def main(argv: Optional[Sequence[str]] = None) -> int:
    versions, options = parse_args(argv)
    started = time.perf_counter()
    if not options.render_only:
        (options.cache / "venvs").mkdir(parents=True, exist_ok=True)
        (options.cache / ".gitignore").write_text("*\n")
    (options.reports / "matrix").mkdir(parents=True, exist_ok=True)
    if not options.render_only:
        (options.cache / "logs").mkdir(exist_ok=True)
        for version in versions:
            run_version(version, options, options.cache / "logs")
    total = time.perf_counter() - started
    results = [load_result(version, options) for version in versions]
    runs = [options.raw(version, "run.json") for version in versions if options.raw(version, "run.json").exists()]
    recorded = json.loads(runs[0].read_text()) if options.render_only and runs else {}
    profile, seed = recorded.get("profile", options.profile), recorded.get("seed", options.seed)
    pytest_args = recorded.get("pytest_args", options.pytest_args)
    command = "python -m tools.matrix " + " ".join(versions)
    command += " -- " + " ".join(pytest_args) if pytest_args else ""
    context = {
        "date": datetime.date.today().isoformat(),
        "Python": recorded.get("python", platform.python_version()),
        "Hypothesis profile": f"{profile}, --hypothesis-seed={seed}",
    }
    if not options.render_only:
        context["total time"] = seconds(total)
    report = options.reports / "matrix.md"
    report.write_text(render(results, command=command, context=context), encoding="utf-8")
    for r in results:
        print(
            f"torch {r.version}: {'green' if r.green else 'RED'}; {r.count('passed')} passed, "
            f"{r.count('failed')} failed, {r.count('error')} errors, {r.count('skipped')} skipped; "
            f"install {seconds(r.install_s)}{' (reused)' if r.reused else ''}, tests {seconds(r.test_s)}, "
            f"probes {seconds(r.probe_s)}"
        )
    print(f"report: {report}" + ("" if options.render_only else f"\ntotal time: {seconds(total)}"))
    return 0 if all(r.green for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
