"""pytest plugin: `--summary-json PATH` writes a JSON summary of the run for CI (versions, profile, seed, counts, completeness).

Under pytest-xdist only the controller writes it, from the reports the workers send back. A run
is `complete` when every collected test finished and nothing stopped it (Ctrl-C, -x, an internal
error): an interrupted run's counts are only what ran before it stopped.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

CATEGORIES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")


def pytest_addoption(parser):
    parser.getgroup("grad_accumulation").addoption(
        "--summary-json",
        metavar="PATH",
        default=None,
        help="write a JSON summary (versions, Hypothesis profile and seed, outcome counts, whether the run completed) to PATH",
    )


def pytest_configure(config):
    path = config.getoption("summary_json", default=None)
    if path and not hasattr(config, "workerinput"):
        config.pluginmanager.register(SummaryWriter(config, Path(path)), "grad-accumulation-summary")


INCOMPLETE_EXITS = (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.USAGE_ERROR)


def reason(report) -> str:
    """Why a test was skipped or xfailed, as the short summary prints it."""
    if hasattr(report, "wasxfail"):
        return report.wasxfail or "(no reason given)"
    if isinstance(report.longrepr, tuple):
        return report.longrepr[2].removeprefix("Skipped: ")
    return str(report.longrepr)


class SummaryWriter:
    """Counts outcomes as the terminal summary does (pytest_report_teststatus) and writes them at the end."""

    def __init__(self, config, path: Path):
        self.config = config
        self.path = path
        self.counts: Counter = Counter()
        self.failed: list[str] = []
        self.reasons: dict[str, defaultdict[str, list[str]]] = {"skipped": defaultdict(list), "xfailed": defaultdict(list)}
        self.finished: set[str] = set()
        self.collected: int | None = None
        self.started = time.time()

    def pytest_runtest_logreport(self, report):
        category = self.config.hook.pytest_report_teststatus(report=report, config=self.config)[0]
        if category in CATEGORIES:
            self.counts[category] += 1
        if category in ("failed", "error") and report.nodeid not in self.failed:
            self.failed.append(report.nodeid)
        if category in ("skipped", "xfailed"):
            self.reasons[category][reason(report)].append(report.nodeid)
        if report.when == "teardown":
            self.finished.add(report.nodeid)

    def pytest_collectreport(self, report):
        if report.failed:
            self.counts["error"] += 1
            self.failed.append(report.nodeid)

    def pytest_collection_finish(self, session):
        self.collected = len(session.items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids):
        self.collected = max(self.collected or 0, len(ids))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session, exitstatus):
        stopped = bool(session.shouldstop or session.shouldfail) or exitstatus in INCOMPLETE_EXITS
        complete = not stopped and self.collected is not None and len(self.finished) >= self.collected
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.summary(int(exitstatus), complete), indent=1) + "\n")

    def summary(self, exitstatus: int, complete: bool) -> dict:
        import torch
        from hypothesis import settings

        from properties.run_record import active_deviations, record

        run = record(self.config)
        counts = {category: self.counts.get(category, 0) for category in CATEGORIES}
        return {
            "complete": complete,
            "exitstatus": exitstatus,
            "torch": torch.__version__,
            "python": run["versions"]["python"],
            "hypothesis": run["versions"]["hypothesis"],
            "pytest": pytest.__version__,
            "versions": run["versions"],
            "properties": run["properties"],
            "commit": run["commit"],
            "cuda": torch.cuda.is_available(),
            "profile": run["profile"],
            "max_examples": settings.default.max_examples,
            "seed": run["seed"],
            "seeding": run["seeding"],
            "derandomized": run["derandomized"],
            "derandomize_turned_off": run["derandomize_turned_off"],
            "workers": getattr(self.config.option, "numprocesses", None) or 0,
            "collected": self.collected,
            "finished": len(self.finished),
            "counts": counts,
            "total": sum(counts.values()),
            "failed_tests": self.failed,
            "skip_reasons": dict(self.reasons["skipped"]),
            "xfail_reasons": dict(self.reasons["xfailed"]),
            "active_deviations": active_deviations(),
            "seconds": round(time.time() - self.started, 2),
        }
