"""pytest plugin: `--summary-json PATH` writes a JSON summary of the run for CI (torch, profile, seed, counts).

Under pytest-xdist only the controller writes it, from the reports the workers send back.
"""

from __future__ import annotations

import json
import platform
import time
from collections import Counter
from pathlib import Path

import pytest

CATEGORIES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")


def pytest_addoption(parser):
    parser.getgroup("grad_accumulation").addoption(
        "--summary-json",
        metavar="PATH",
        default=None,
        help="write a JSON summary (torch version, Hypothesis profile and seed, outcome counts) to PATH",
    )


def pytest_configure(config):
    path = config.getoption("summary_json", default=None)
    if path and not hasattr(config, "workerinput"):
        config.pluginmanager.register(SummaryWriter(config, Path(path)), "grad-accumulation-summary")


def seeding(config) -> dict:
    """The --hypothesis-seed, or how the run was seeded without one."""
    from hypothesis import settings

    seed = config.getoption("hypothesis_seed", default=None)
    if seed is not None:
        return {"seed": str(seed), "seeding": "--hypothesis-seed"}
    return {"seed": None, "seeding": "derandomized" if settings.default.derandomize else "random per test"}


class SummaryWriter:
    """Counts outcomes as the terminal summary does (pytest_report_teststatus) and writes them at the end."""

    def __init__(self, config, path: Path):
        self.config = config
        self.path = path
        self.counts: Counter = Counter()
        self.failed: list[str] = []
        self.started = time.time()

    def pytest_runtest_logreport(self, report):
        category = self.config.hook.pytest_report_teststatus(report=report, config=self.config)[0]
        if category in CATEGORIES:
            self.counts[category] += 1
        if category in ("failed", "error") and report.nodeid not in self.failed:
            self.failed.append(report.nodeid)

    def pytest_collectreport(self, report):
        if report.failed:
            self.counts["error"] += 1
            self.failed.append(report.nodeid)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session, exitstatus):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.summary(int(exitstatus)), indent=1) + "\n")

    def summary(self, exitstatus: int) -> dict:
        import hypothesis
        import torch
        from hypothesis import settings

        counts = {category: self.counts.get(category, 0) for category in CATEGORIES}
        return {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "hypothesis": hypothesis.__version__,
            "pytest": pytest.__version__,
            "cuda": torch.cuda.is_available(),
            "profile": settings.get_current_profile_name(),
            "max_examples": settings.default.max_examples,
            **seeding(self.config),
            "workers": getattr(self.config.option, "numprocesses", None) or 0,
            "counts": counts,
            "total": sum(counts.values()),
            "failed_tests": self.failed,
            "exitstatus": exitstatus,
            "seconds": round(time.time() - self.started, 2),
        }
