"""pytest plugin for the audit and the benchmark: apply one fault to the whole run, count and replay examples.

Load it with `-p tools.audit_plugin`. Its options:

  --audit-fault MODULE:NAME   apply the Mutant named NAME from properties.mutants.MODULE for the whole
                              session (a pytest.MonkeyPatch, undone when the session ends)
  --audit-record PATH         write one JSON record per test outcome to PATH (by the xdist controller)
  --audit-no-deadline         switch Hypothesis' deadline off
  --audit-replay              run each Hypothesis test twice (the first run warms torch up), then
                              call its body again on the examples the second run drew, without
                              Hypothesis, and time all three

Examples are counted by wrapping each Hypothesis test's body (`test.hypothesis.inner_test`, the
hook Hypothesis provides for wrapping): every call is one example run, and the number of the first
call that raises (Hypothesis' own control exceptions aside) is how many examples the fault took.
A test that runs Hypothesis inside its body instead (as the recipe tests do) is counted from the
test cases Hypothesis reports to its observability callbacks (the generate phase's examples, in order). Hypothesis'
example database is switched off so a stored counterexample cannot be replayed first.

Every failed phase also records how far the failure lies above the tolerance: the largest
`.ratio` (error ÷ tolerance) of the properties.compare.ComparisonError the test raised, of those
inside it (a Hypothesis group of distinct failures, a RecipeError's `.comparison` and `.others`)
and of its explicit causes (`raise ... from`); None when none is above 1, a structural failure
(a .grad that is None, a wrong count, an unexpected exception).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

RECORD_KEY = "audit"
MARGIN_KEY = "audit-margin"
_COUNTER = pytest.StashKey["ExampleCounter"]()
_MONKEYPATCH = pytest.StashKey[pytest.MonkeyPatch]()


def resolve_mutant(spec: str):
    """The Mutant that 'MODULE:NAME' names (MODULE in properties.mutants, NAME its Mutant.name)."""
    module_name, _, name = spec.partition(":")
    module = importlib.import_module(f"properties.mutants.{module_name}")
    for mutant in getattr(module, "MUTANTS", ()):
        if mutant.name == name:
            return mutant
    known = ", ".join(m.name for m in getattr(module, "MUTANTS", ()))
    raise pytest.UsageError(f"no mutant {name!r} in properties.mutants.{module_name} (known: {known})")


def comparison_failures(error: BaseException | None) -> list:
    """Every properties.compare.ComparisonError behind `error`: itself, the members of an exception group, a
    RecipeError's `.comparison` and `.others`, and explicit causes (`raise ... from`, not __context__)."""
    from properties.compare import ComparisonError

    found, stack, seen = [], [error], set()
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ComparisonError):
            found.append(current)
        stack.extend(reversed(list(getattr(current, "exceptions", None) or ())))
        stack.extend(reversed(list(getattr(current, "others", None) or ())))
        stack.append(getattr(current, "comparison", None))
        stack.append(getattr(current, "__cause__", None))
    return found


def margin_of(comparison) -> float:
    """A comparison failure's error ÷ tolerance; NaN counts as ∞."""
    value = float(comparison.ratio)
    return math.inf if math.isnan(value) else value


def failure_margin(error: BaseException | None) -> dict:
    """The record fields for one failure: its largest error ÷ tolerance (None: structural) and whether bitwise.

    Read from the `.ratio` and `.bitwise` of the comparison failures behind it. A ratio ≤ 1 is no
    numeric failure (the comparison failed on dtype, device or layout) and a shape mismatch has no
    ratio: both count as structural. ∞ is written as the string "inf", so the records and the
    reports stay strict JSON.
    """
    margins = [(margin_of(c), c.bitwise) for c in comparison_failures(error) if c.ratio is not None]
    margins = [m for m in margins if m[0] > 1]
    if not margins:
        return {"error_over_tolerance": None, "bitwise": False}
    value, bitwise = max(margins, key=lambda m: (m[0], m[1]))
    return {"error_over_tolerance": ratio_to_json(value), "bitwise": bitwise}


def ratio_to_json(value: float) -> float | str:
    return "inf" if math.isinf(value) else value


def ratio_from_json(value: float | str | None) -> float | None:
    return None if value is None else float(value)


def is_control_flow(error: BaseException) -> bool:
    """Whether `error` is Hypothesis rejecting the example (assume, filter, overrun) or a skip: not a failure."""
    from hypothesis.errors import StopTest, UnsatisfiedAssumption

    return isinstance(error, (UnsatisfiedAssumption, StopTest, pytest.skip.Exception))


class ReplayData:
    """Stands in for `st.data()` on replay: returns, in order, the values the Hypothesis run drew."""

    def __init__(self, values: list[Any]):
        self.values = list(values)

    def draw(self, strategy: Any = None, label: Any = None) -> Any:
        """The next recorded value (the strategy is not consulted)."""
        if not self.values:
            raise LookupError("replay drew more values than the recorded example did")
        return self.values.pop(0)


def recording_data(data: Any, drawn: list[Any]) -> Any:
    """Make `data.draw` also append each drawn value to `drawn`."""
    original = data.draw

    def draw(strategy, label=None):
        value = original(strategy, label=label)
        drawn.append(value)
        return value

    data.draw = draw
    return data


@dataclass
class ExampleCounter:
    """Counts calls of one test body, notes the first that failed, and optionally keeps the arguments."""

    inner: Callable[..., Any]
    keep: bool = False
    calls: int = 0
    first_failure: int | None = None
    kept: list[tuple] = field(default_factory=list)
    seconds: float = 0.0
    replay_seconds: float | None = None
    cold_seconds: float | None = None
    runs: int = 0
    large: int = 0

    def summary(self) -> dict:
        """What the record keeps: examples run, the first failing one, the run's and the replay's seconds."""
        return {
            "examples": self.calls,
            "first_failure": self.first_failure,
            "hypothesis_seconds": round(self.seconds, 6),
            "replay_seconds": None if self.replay_seconds is None else round(self.replay_seconds, 6),
            "cold_seconds": None if self.cold_seconds is None else round(self.cold_seconds, 6),
            "replayed": len(self.kept) if self.replay_seconds is not None else None,
            "large_examples": self.large,
        }

    def __call__(self, *args, **kwargs):
        """Run one example; an example Hypothesis rejects (assume, a failed filter) is not counted."""
        self.calls += 1
        drawn: list[Any] = []
        plain = kwargs
        kwargs = {k: recording_data(v, drawn) if is_data_object(v) else v for k, v in kwargs.items()}
        counted = True
        try:
            result = self.inner(*args, **kwargs)
        except BaseException as error:
            if is_control_flow(error):
                self.calls -= 1
                counted = False
            elif self.first_failure is None:
                self.first_failure = self.calls
            raise
        finally:
            if counted:
                self.large += from_the_large_end({**plain, **{f"drawn {i}": value for i, value in enumerate(drawn)}})
        if self.keep:
            self.kept.append((args, kwargs, drawn))
        return result

    def replay(self) -> float:
        """Seconds to call the body on every kept example, with plain arguments instead of Hypothesis."""
        start = time.perf_counter()
        for args, kwargs, drawn in self.kept:
            plain = {k: ReplayData(drawn) if is_data_object(v) else v for k, v in kwargs.items()}
            try:
                self.inner(*args, **plain)
            except Exception as error:
                if not is_control_flow(error):
                    raise
        return time.perf_counter() - start


SMALL_END = {"largest_tensor": 1024, "rows": 3, "depth": 8, "steps": 4}
"""The small end of the drawn space: an example past any of these came from the strategies' large share."""


def from_the_large_end(kwargs: dict) -> bool:
    """Whether an example's arguments hold a tensor of ≥ 1,024 elements, a micro-batch of > 3 rows, > 8 layers or > 4 steps."""
    for name, value in kwargs.items():
        if name == "steps" and isinstance(value, int) and value > SMALL_END["steps"]:
            return True
        case = getattr(value, "case", value)
        model, sizes = getattr(case, "model", None), getattr(case, "sizes", None)
        if model is not None and hasattr(model, "largest_tensor"):
            if model.largest_tensor >= SMALL_END["largest_tensor"] or getattr(model, "depth", 0) > SMALL_END["depth"]:
                return True
        if sizes and all(isinstance(m, int) for m in sizes) and max(sizes) > SMALL_END["rows"]:
            return True
    return False


def is_data_object(value: Any) -> bool:
    """Whether a drawn argument is the object `st.data()` gives a test."""
    from hypothesis.strategies import DataObject

    return isinstance(value, DataObject)


def pytest_addoption(parser):
    group = parser.getgroup("audit", "fault injection and example counting (tools.audit, tools.bench)")
    group.addoption("--audit-fault", metavar="MODULE:NAME", help="apply this mutant from properties.mutants to the whole run")
    group.addoption("--audit-record", metavar="PATH", help="write the per-test records as JSON to PATH")
    group.addoption(
        "--audit-no-deadline",
        action="store_true",
        help="switch Hypothesis' deadline off (a slow example on a busy machine is not a caught fault)",
    )
    group.addoption("--audit-replay", action="store_true", help="replay each passing test's examples without Hypothesis")


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    """Turn off the example database (under a fault, shrinking too; if asked, the deadline) in the loaded profile."""
    from hypothesis import Phase, settings

    name = settings.get_current_profile_name()
    extra = {}
    if config.getoption("audit_fault"):
        extra["phases"] = [p for p in settings.default.phases if p not in (Phase.shrink, Phase.explain)]
    if config.getoption("audit_no_deadline"):
        extra["deadline"] = None
    settings.register_profile(name, settings(settings.default, database=None, **extra))
    settings.load_profile(name)
    path = config.getoption("audit_record")
    if path and not hasattr(config, "workerinput"):
        config.pluginmanager.register(Recorder(path), "audit-recorder")


def pytest_sessionstart(session):
    spec = session.config.getoption("audit_fault")
    if spec:
        monkeypatch = pytest.MonkeyPatch()
        resolve_mutant(spec).apply(monkeypatch)
        session.config.stash[_MONKEYPATCH] = monkeypatch


COUNTED_PHASES = ("generate", "target")
COUNTED_STATUSES = ("passed", "failed")


def examples_until_failure(cases: list[tuple[str, str]]) -> tuple[int, int | None]:
    """From one Hypothesis run's test cases, (phase, status) in order: examples run while generating, and the
    number of the first that failed.

    An example counts when it ran to the end or failed (observability's "passed" and "failed");
    the ones Hypothesis gave up on (rejected, overrun) do not, nor the explicit, reuse and shrink phases'.
    """
    ran, first = 0, None
    for phase, status in cases:
        if phase not in COUNTED_PHASES or status not in COUNTED_STATUSES:
            continue
        ran += 1
        if status == "failed" and first is None:
            first = ran
    return ran, first


@contextlib.contextmanager
def observations_into(counter: "ExampleCounter"):
    """For a test that runs Hypothesis inside its body: add every run's examples to `counter`, read from
    Hypothesis' observability callbacks (documented, though they live in hypothesis.internal.observability).

    A Hypothesis without them (before 6.135) counts nothing.
    """
    try:
        from hypothesis.internal.observability import with_observability_callback
    except ImportError:
        yield
        return
    runs: dict[tuple, list[tuple[str, str]]] = {}

    def note(observation):
        if getattr(observation, "type", None) == "test_case":
            phase = getattr(observation.metadata, "phase", None)
            runs.setdefault((observation.property, observation.run_start), []).append((phase, observation.status))

    try:
        with with_observability_callback(note):
            yield
    finally:
        for cases in runs.values():
            ran, first = examples_until_failure(cases)
            if counter.first_failure is None and first is not None:
                counter.first_failure = counter.calls + first
            counter.calls += ran
            counter.runs += 1


def counted_run(handle, counter: ExampleCounter):
    """Run the test's body through `counter`: install it as Hypothesis' inner test for the duration."""
    original = handle.inner_test
    handle.inner_test = functools.wraps(original)(lambda *args, **kwargs: counter(*args, **kwargs))
    return original


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """Count the examples Hypothesis runs through this test's body and time the run.

    With --audit-replay, the test first runs once untimed (so that both the timed run and the
    replay find torch's per-shape kernels already built), then the timed run keeps its examples,
    then they are replayed without Hypothesis.
    """
    handle = getattr(getattr(item, "obj", None), "hypothesis", None)
    if handle is None:
        counter = ExampleCounter(None)
        start = time.perf_counter()
        with observations_into(counter):
            yield
        counter.seconds = time.perf_counter() - start
        if counter.runs:
            item.stash[_COUNTER] = counter
        return
    replay = item.config.getoption("audit_replay")
    original = handle.inner_test
    cold = None
    if replay:
        cold = ExampleCounter(original)
        counted_run(handle, cold)
        start = time.perf_counter()
        try:
            item.runtest()
        except (Exception, pytest.fail.Exception, pytest.skip.Exception):
            pass
        finally:
            cold.seconds = time.perf_counter() - start
            handle.inner_test = original
    counter = ExampleCounter(original, keep=replay)
    counted_run(handle, counter)
    start = time.perf_counter()
    try:
        outcome = yield
    finally:
        counter.seconds = time.perf_counter() - start
        handle.inner_test = original
    counter.cold_seconds = None if cold is None else cold.seconds
    item.stash[_COUNTER] = counter
    if replay and outcome.excinfo is None:
        counter.replay_seconds = counter.replay()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the counts, and a failure's error ÷ tolerance, to the report (user_properties travel from xdist workers)."""
    outcome = yield
    report = outcome.get_result()
    counter = item.stash.get(_COUNTER, None)
    if call.when == "call" and counter is not None:
        report.user_properties.append((RECORD_KEY, counter.summary()))
    if report.failed:
        error = call.excinfo.value if call.excinfo is not None else None
        report.user_properties.append((MARGIN_KEY, failure_margin(error)))


class Recorder:
    """Collects one record per test call and per failed set-up or teardown; writes them as JSON."""

    def __init__(self, path: str):
        self.path = Path(path)
        self.records: list[dict] = []

    def pytest_runtest_logreport(self, report):
        if report.when != "call" and not report.failed:
            return
        record = {"nodeid": report.nodeid, "when": report.when, "outcome": report.outcome, "duration": report.duration}
        if hasattr(report, "wasxfail"):
            record["outcome"] = "xfailed" if report.skipped else "xpassed"
        crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
        if report.failed and crash is not None and crash.message:
            record["message"] = crash.message.strip().splitlines()[0][:300]
        for key, value in report.user_properties:
            if key in (RECORD_KEY, MARGIN_KEY):
                record.update(value)
        self.records.append(record)

    def pytest_sessionfinish(self, session, exitstatus):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fault = session.config.getoption("audit_fault")
        record = {"fault": fault, "exitstatus": int(exitstatus), "tests": self.records}
        self.path.write_text(json.dumps(record, indent=1))


def pytest_sessionfinish(session):
    """Undo the fault."""
    monkeypatch = session.config.stash.get(_MONKEYPATCH, None)
    if monkeypatch is not None:
        monkeypatch.undo()
