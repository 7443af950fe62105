"""pytest plugin for the benchmark: when each phase of a run happens, per xdist worker, to show where wall time goes.

Load it with `-p tools.timeline_plugin --timeline-record=PATH`. On the process that runs
the session (the xdist controller, or the only process with -n 0) it writes, at the end:

  {"session_start", "session_end", "collected",         wall-clock seconds (time.time())
   "workers": {id: {"ready", "collected"}},              xdist: when each worker was up, had collected
   "reports": [{"nodeid", "when", "start", "stop", "worker"}]}   every setup, call and teardown

`tools.bench.phases` turns it into seconds per phase: start-up, collection, set-up,
calls, teardown and the time a worker waited at the end for the other.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

SERIAL = "main"


def pytest_addoption(parser):
    parser.getgroup("timeline").addoption(
        "--timeline-record", metavar="PATH", default=None, help="write when each phase and test ran to PATH (JSON)"
    )


def pytest_configure(config):
    if config.getoption("timeline_record") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(Timeline(Path(config.getoption("timeline_record"))), "timeline")


class Timeline:
    """Collects the timestamps on the controller and writes them at the end of the session."""

    def __init__(self, path: Path):
        self.path = path
        self.record: dict = {"session_start": None, "session_end": None, "collected": None, "workers": {}, "reports": []}

    def worker(self, node) -> dict:
        return self.record["workers"].setdefault(node.gateway.id, {"ready": None, "collected": None})

    def pytest_sessionstart(self, session):
        self.record["session_start"] = time.time()

    def pytest_collection_finish(self, session):
        self.record["collected"] = time.time()

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodeready(self, node):
        self.worker(node)["ready"] = time.time()

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids):
        self.worker(node)["collected"] = time.time()

    def pytest_runtest_logreport(self, report):
        node = getattr(report, "node", None)
        self.record["reports"].append(
            {
                "nodeid": report.nodeid,
                "when": report.when,
                "start": getattr(report, "start", None),
                "stop": getattr(report, "stop", None),
                "worker": node.gateway.id if node is not None else SERIAL,
            }
        )

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session):
        self.record["session_end"] = time.time()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.record))
