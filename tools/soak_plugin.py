"""pytest plugin for the soak: many examples per @given test, every failure recorded, how close each comparison came.

Load it with `-p tools.soak_plugin`. Its options:

  --soak-examples N            max_examples for every @given test of the run
  --soak-examples-for FAM=N    max_examples for the @given tests of one family (repeatable;
                               e.g. distributed=200, where each example is one window)
  --soak-record PATH           write the per-test records as JSON to PATH at the end of the session
                               (by the xdist controller, from the reports the workers send back)
  --soak-keep N                keep at most N failure records per test (default 1000; all are counted)
  --soak-targeted              add Hypothesis' target phase, and run each example inside
                               properties.compare.targeting(test name): it reports the example's largest
                               error ÷ tolerance as a target, so Hypothesis climbs toward the bound
  --soak-dtype NAME            every `properties.strategies.dtypes()` that may draw low precision draws only
                               NAME (float32, float16 or bfloat16): a per-dtype target met without the
                               float64 examples (DTYPE_CONSTANTS too, such as the tutorial loop's
                               float64/float32 draw); tests that draw no dtype run as usual

The soak's settings are a Hypothesis profile, registered over the one --hypothesis-profile loads and
loaded before the test modules are imported, so every @given test takes them: only generating
(phases explicit and generate, and target with --soak-targeted), no database, no deadline, not
derandomized, every health check suppressed. A family with its own count has its modules imported
under a profile of that count. A test that sets a value itself keeps it (one whose max_examples is
a share of the profile's, `properties.profiles.examples`, draws that share of the soak's). Its body
(`test.hypothesis.inner_test`, wrapped as tools.audit_plugin wraps it to count examples)
runs each example inside `properties.compare.observing`, so every comparison reports its
error ÷ tolerance. An example that raises (an AssertionError, or any other exception but
Hypothesis' own control flow and pytest's skip) is recorded — test, drawn arguments, the message's
first lines, the error ÷ tolerance of the failing comparison (the `.ratio` of the
properties.compare.ComparisonError behind it) — and not re-raised, so the test goes
on to its next example and passes. An AssertionError carrying `by_property`, a list of
(property, error), is recorded once per property (tools/soak_recipes.py raises one).
Examples Hypothesis rejects (assume, filters) are not counted. Per test the record keeps the
examples run, the failures, the worst error ÷ tolerance over passing examples (which comparison,
which example) and examples, failures and worst per dtype (the dtype of a drawn Case, of the case
inside a drawn dict or RecipeCase, a drawn torch.dtype, or "float64" when a drawn value's
one-line description names float64 and no other dtype; "n/a" otherwise).

Tests without @given run once, as usual, and are recorded with their outcome only.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import pytest

from tools import audit_plugin
from tools.audit_plugin import comparison_failures, is_control_flow, is_data_object, margin_of, ratio_to_json
from tools.bench import family as family_of_nodeid

RECORD_KEY = "soak"
MESSAGE_LINES = 15
REPR_CHARACTERS = 400
DTYPE_NAMES = ("float64", "float32", "float16", "bfloat16")
NOT_KNOWN = "n/a"
_STATS = pytest.StashKey["SoakStats"]()
_FAMILY_EXAMPLES = pytest.StashKey[tuple]()


def family_of(item: pytest.Item) -> str:
    """The item's family: its module's SOAK_FAMILY, else the module's name without 'test_'."""
    module = getattr(item, "module", None)
    return getattr(module, "SOAK_FAMILY", None) or family_of_nodeid(item.nodeid)


def short_repr(value: Any, limit: int = REPR_CHARACTERS) -> str:
    """repr(value) on one line, cut to `limit` characters."""
    try:
        text = repr(value)
    except Exception as error:  # a repr that raises must not stop the soak
        text = f"<unprintable {type(value).__name__}: {error}>"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def dtype_of(value: Any, depth: int = 0) -> Optional[str]:
    """The dtype name of a drawn value: a torch.dtype, an object's .dtype, or that of its .case / ["case"]."""
    import torch

    from properties.case import dtype_name

    if depth > 3:
        return None
    if isinstance(value, torch.dtype):
        return dtype_name(value)
    dtype = getattr(value, "dtype", None)
    if isinstance(dtype, torch.dtype) and not isinstance(value, torch.Tensor):
        return dtype_name(dtype)
    inner = value.get("case") if isinstance(value, dict) else getattr(value, "case", None)
    return None if inner is None else dtype_of(inner, depth + 1)


def clearly_float64(value: Any) -> bool:
    """Whether the value's one-line description names float64 and no other dtype."""
    text = short_repr(value, 10_000)
    return "float64" in text and not any(name in text for name in DTYPE_NAMES if name != "float64")


def example_dtype(values: list[Any]) -> str:
    """The dtype of the first drawn value that has one; "float64" if one clearly is; else "n/a"."""
    for value in values:
        found = dtype_of(value)
        if found:
            return found
    return "float64" if any(clearly_float64(v) for v in values) else NOT_KNOWN


def failure_excess(error: Any) -> Optional[float]:
    """The largest error ÷ tolerance (`.ratio`) of the comparison failures behind an exception, or None (structural)."""
    if not isinstance(error, BaseException):
        return None
    values = [margin_of(c) for c in comparison_failures(error) if c.ratio is not None]
    return max(values) if values else None


def json_ratio(value: Optional[float]) -> Optional[float | str]:
    """An error ÷ tolerance for strict JSON, as the audit writes it: ∞ (and NaN, which fails every comparison) as "inf"."""
    if value is None:
        return None
    return ratio_to_json(math.inf if math.isnan(value) else value)


def first_lines(message: str, count: int = MESSAGE_LINES) -> str:
    lines = message.strip().splitlines()
    return "\n".join(lines[:count] + ([f"… ({len(lines) - count} more lines)"] if len(lines) > count else []))


def is_recorded_failure(error: BaseException) -> bool:
    """Whether an exception from a test body is a failure to record: not Hypothesis' control flow, not a skip."""
    from hypothesis.errors import HypothesisException

    if is_control_flow(error) or isinstance(error, HypothesisException):
        return False
    return isinstance(error, (Exception, pytest.fail.Exception))


def worse(excess: Optional[float], than: Optional[float]) -> bool:
    """Whether `excess` is a worse (larger) error ÷ tolerance than `than` (None is no observation)."""
    if excess is None or (isinstance(excess, float) and math.isnan(excess)):
        return False
    return than is None or excess > than


@dataclass
class SoakStats:
    """One @given test's soak: examples, failures, worst error ÷ tolerance, per dtype."""

    inner: Callable[..., Any]
    nodeid: str
    given: tuple[str, ...] = ()
    keep: int = 1000
    label: str = ""
    examples: int = 0
    failing_examples: int = 0
    failure_count: int = 0
    failures: list[dict] = field(default_factory=list)
    worst: Optional[float] = None
    worst_name: str = ""
    worst_case: str = ""
    dtypes: dict[str, dict] = field(default_factory=dict)
    seconds: float = 0.0

    def describe(self, kwargs: dict, drawn: list[tuple[str, Any]]) -> tuple[str, list[Any]]:
        """The example on one line (given arguments, then what `data` drew, by label) and the values to look for a dtype in."""
        parts, values = [], []
        for name in self.given or kwargs:
            if name not in kwargs:
                continue
            value = kwargs[name]
            if is_data_object(value):
                for label, item in drawn:
                    parts.append(f"{label}={short_repr(item)}")
                    values.append(item)
            else:
                parts.append(f"{name}={short_repr(value)}")
                values.append(value)
        others = [v for k, v in kwargs.items() if k not in self.given and not is_data_object(v)]
        return "; ".join(parts), values + others

    def __call__(self, *args, **kwargs):
        """Run one example inside compare.observing (and, targeted, compare.targeting); record a failure instead of raising it."""
        from properties.compare import observing, targeting

        drawn: list[tuple[str, Any]] = []
        kwargs = {k: self._recording(v, drawn) if is_data_object(v) else v for k, v in kwargs.items()}
        observed: list[tuple[str, float]] = []
        target = targeting(self.label) if self.label else contextlib.nullcontext()
        try:
            with observing(lambda name, excess, tolerance: observed.append((name, excess))), target:
                result = self.inner(*args, **kwargs)
        except BaseException as error:
            if not is_recorded_failure(error):
                raise
            self.failed(error, kwargs, drawn, observed)
            return None
        self.passed(kwargs, drawn, observed)
        return result

    @staticmethod
    def _recording(data: Any, drawn: list[tuple[str, Any]]) -> Any:
        """Make data.draw note (label, value) of each draw (as audit_plugin.recording_data does, keeping the label)."""
        original = data.draw

        def draw(strategy, label=None):
            value = original(strategy, label=label)
            drawn.append((label or f"draw {len(drawn) + 1}", value))
            return value

        data.draw = draw
        return data

    def bucket(self, dtype: str) -> dict:
        return self.dtypes.setdefault(dtype, {"examples": 0, "failures": 0, "worst": None})

    def drawn_values(self, kwargs: dict, drawn: list[tuple[str, Any]]) -> list[Any]:
        """What to look for the example's dtype in: the given arguments, what `data` drew, then the other arguments."""
        values = [item for _, item in drawn]
        values += [v for k, v in kwargs.items() if k in self.given and not is_data_object(v)]
        return values + [v for k, v in kwargs.items() if k not in self.given and not is_data_object(v)]

    def passed(self, kwargs: dict, drawn: list, observed: list[tuple[str, float]]) -> None:
        bucket = self.bucket(example_dtype(self.drawn_values(kwargs, drawn)))
        self.examples += 1
        bucket["examples"] += 1
        if not observed:
            return
        name, excess = max(observed, key=lambda o: -1.0 if math.isnan(o[1]) else o[1])
        if worse(excess, bucket["worst"]):
            bucket["worst"] = excess
        if worse(excess, self.worst):
            self.worst, self.worst_name, self.worst_case = excess, name, self.describe(kwargs, drawn)[0]

    def failed(self, error: BaseException, kwargs: dict, drawn: list, observed: list[tuple[str, float]]) -> None:
        case, values = self.describe(kwargs, drawn)
        dtype = example_dtype(values)
        bucket = self.bucket(dtype)
        self.examples += 1
        self.failing_examples += 1
        bucket["examples"] += 1
        bucket["failures"] += 1
        over = [(n, e) for n, e in observed if not (e <= 1)]
        by_property = getattr(error, "by_property", None) or [(None, error)]
        for prop, cause in by_property:
            self.failure_count += 1
            if len(self.failures) >= self.keep:
                continue
            message = self.message(cause) if isinstance(cause, BaseException) else str(cause)
            excess = failure_excess(cause)
            if excess is None and over:
                excess = over[-1][1]
            record = {
                "example": self.examples,
                "dtype": dtype,
                "case": case,
                "error": type(error).__name__,
                "excess": json_ratio(excess),
                "comparison": over[-1][0] if over else "",
                "message": first_lines(message),
            }
            if prop is not None:
                record["property"] = prop
            self.failures.append(record)

    @staticmethod
    def message(error: BaseException) -> str:
        text = str(error)
        return text if isinstance(error, AssertionError) else f"{type(error).__name__}: {text}"

    def summary(self, family: str, max_examples: int) -> dict:
        return {
            "family": family,
            "given": True,
            "max_examples": max_examples,
            "examples": self.examples,
            "failing_examples": self.failing_examples,
            "failure_count": self.failure_count,
            "failures": self.failures,
            "worst": json_ratio(self.worst),
            "worst_comparison": self.worst_name,
            "worst_case": self.worst_case,
            "dtypes": {name: {**bucket, "worst": json_ratio(bucket["worst"])} for name, bucket in self.dtypes.items()},
            "seconds": round(self.seconds, 6),
        }


def pytest_addoption(parser):
    group = parser.getgroup("soak", "the soak: many examples, every failure recorded (python -m tools.reliability --soak)")
    group.addoption(
        "--soak-examples", type=int, default=None, metavar="N", help="max_examples for every @given test (default: the profile's)"
    )
    group.addoption(
        "--soak-examples-for",
        action="append",
        default=[],
        metavar="FAMILY=N",
        help="max_examples for the @given tests of one family (repeatable)",
    )
    group.addoption(
        "--soak-dtype",
        default=None,
        choices=DTYPE_NAMES[1:],
        metavar="NAME",
        help="low-precision dtype draws only this dtype: " + ", ".join(DTYPE_NAMES[1:]),
    )
    group.addoption(
        "--soak-targeted",
        action="store_true",
        help="add Hypothesis' target phase: it climbs toward the bound each comparison's error ÷ tolerance reports",
    )
    group.addoption("--soak-record", metavar="PATH", default=None, help="write the per-test records as JSON to PATH")
    group.addoption(
        "--soak-keep",
        type=int,
        default=1000,
        metavar="N",
        help="failure records kept per test (default 1000; every failure is counted)",
    )


def family_examples(config) -> dict[str, int]:
    """FAMILY → N from the --soak-examples-for options."""
    result = {}
    for spec in config.getoption("soak_examples_for"):
        name, _, count = spec.partition("=")
        try:
            result[name.strip()] = int(count)
        except ValueError:
            raise pytest.UsageError(f"--soak-examples-for {spec!r}: expected FAMILY=N, e.g. distributed=200") from None
    return result


def pinned_dtypes(original: Callable, name: str) -> Callable:
    """`properties.strategies.dtypes` drawing only `name` wherever it may draw low precision and the device runs it."""
    import torch
    from hypothesis import strategies as st

    from properties.strategies import supported_dtypes

    dtype = getattr(torch, name)

    @functools.wraps(original)
    def dtypes(*, low_precision: bool = True, device: str = "cpu"):
        if low_precision and dtype in supported_dtypes(device):
            return st.just(dtype)
        return original(low_precision=low_precision, device=device)

    dtypes.soak_original = original
    return dtypes


DTYPE_CONSTANTS = (("properties.invariants.tutorial", "FIRST_LOOP_DTYPES"),)
"""Module-level sampled_from strategies of dtypes (not built by `dtypes`) that a pin narrows when they may draw it."""
_unpinned_constants: dict[tuple[str, str], object] = {}


def pin_dtype(name: str) -> None:
    """Replace `dtypes` in properties.strategies and in every loaded module that imported it, and narrow each
    DTYPE_CONSTANTS strategy that may draw `name` to it (before collection)."""
    import importlib
    import sys

    import torch
    from hypothesis import strategies as st

    from properties import strategies

    original = getattr(strategies.dtypes, "soak_original", strategies.dtypes)
    pinned = pinned_dtypes(original, name)
    for module in list(sys.modules.values()):
        if (
            getattr(module, "__dict__", {}).get("dtypes") is original or module is strategies
        ):  # __dict__: some modules' __getattr__ raises
            module.dtypes = pinned
    dtype = getattr(torch, name)
    for module_name, attribute in DTYPE_CONSTANTS:
        module = importlib.import_module(module_name)
        constant = _unpinned_constants.get((module_name, attribute), getattr(module, attribute))
        if dtype in getattr(constant, "elements", ()):
            _unpinned_constants[(module_name, attribute)] = constant
            setattr(module, attribute, st.just(dtype))


def unpin_dtype() -> None:
    """Give every module that holds the pinned `dtypes` the original back, and every narrowed constant its strategy."""
    import sys

    for module in list(sys.modules.values()):
        original = getattr(getattr(module, "__dict__", {}).get("dtypes"), "soak_original", None)
        if original is not None:
            module.dtypes = original
    while _unpinned_constants:
        (module_name, attribute), constant = _unpinned_constants.popitem()
        setattr(sys.modules[module_name], attribute, constant)


SOAK_PROFILE = "soak"
_PROFILE_BEFORE = pytest.StashKey[str]()


def pytest_unconfigure(config):
    """Leave the strategies and the loaded Hypothesis profile as they were."""
    if config.getoption("soak_dtype", default=None):
        unpin_dtype()
    if _PROFILE_BEFORE in config.stash:
        from hypothesis import settings

        settings.load_profile(config.stash[_PROFILE_BEFORE])


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    """Load the soak's Hypothesis profile (after the one --hypothesis-profile names), pin the low-precision dtype if
    asked, and register the collector on the controller (it records, writes and prints a summary)."""
    from hypothesis import settings

    config.stash[_PROFILE_BEFORE] = settings.get_current_profile_name()
    load_soak_profile(config, config.getoption("soak_examples"))
    if config.getoption("soak_dtype", default=None):
        pin_dtype(config.getoption("soak_dtype"))
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(Collector(config), "soak-collector")


def load_soak_profile(config, max_examples: Optional[int], name: str = SOAK_PROFILE) -> None:
    """Register and load the soak's settings over the profile loaded before the soak's (max_examples: its, when None)."""
    from hypothesis import settings

    parent = settings.get_profile(config.stash[_PROFILE_BEFORE])
    targeted = bool(config.getoption("soak_targeted", default=False))
    settings.register_profile(name, soak_settings(parent, max_examples or parent.max_examples, targeted))
    settings.load_profile(name)


def soak_settings(parent, max_examples: int, targeted: bool = False):
    """The parent settings, only generating (and, targeted, climbing toward the bound), no database, no deadline,
    not derandomized, no health check."""
    from hypothesis import HealthCheck, Phase, settings

    return settings(
        parent,
        max_examples=max_examples,
        phases=[Phase.explicit, Phase.generate, *([Phase.target] if targeted else [])],
        database=None,
        deadline=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """Import a module of a family with its own --soak-examples-for count under a profile of that count.

    Hypothesis binds a test's settings when its module is imported (@given takes the loaded profile,
    @settings(...) falls back to it), so each family's tests get their count without being touched.
    """
    count = (
        family_examples(collector.config).get(family_of_nodeid(collector.nodeid))
        if isinstance(collector, pytest.Module)
        else None
    )
    if not count:
        yield
        return
    load_soak_profile(collector.config, count, f"{SOAK_PROFILE}-{count}")
    try:
        yield
    finally:
        from hypothesis import settings

        settings.load_profile(SOAK_PROFILE)


def given_names(function: Callable, inner: Callable) -> tuple[str, ...]:
    """The arguments @given draws: the body's parameters that the decorated test's own signature no longer has."""
    import inspect

    outer = set(inspect.signature(function).parameters)
    return tuple(name for name in inspect.signature(inner).parameters if name not in outer)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """Run a @given test's examples through SoakStats (its body, `test.hypothesis.inner_test`, wrapped); restore it after."""
    function = getattr(item, "obj", None)
    handle = getattr(function, "hypothesis", None)
    if handle is None:
        yield
        return
    from hypothesis import settings

    family = family_of(item)
    count = family_examples(item.config).get(family) or item.config.getoption("soak_examples") or settings.default.max_examples
    original = handle.inner_test
    label = item.originalname if item.config.getoption("soak_targeted") else ""
    stats = SoakStats(original, item.nodeid, given_names(function, original), item.config.getoption("soak_keep"), label)
    handle.inner_test = functools.wraps(original)(lambda *args, **kwargs: stats(*args, **kwargs))
    start = time.perf_counter()
    try:
        yield
    finally:
        stats.seconds = time.perf_counter() - start
        handle.inner_test = original
        item.stash[_STATS] = stats
        item.stash[_FAMILY_EXAMPLES] = (family, count)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the soak record to the call report (user_properties travel from xdist workers to the controller)."""
    outcome = yield
    report = outcome.get_result()
    if call.when != "call":
        return
    stats = item.stash.get(_STATS, None)
    if stats is not None:
        family, count = item.stash[_FAMILY_EXAMPLES]
        report.user_properties.append((RECORD_KEY, stats.summary(family, count)))
    else:
        report.user_properties.append((RECORD_KEY, {"family": family_of(item), "given": False}))


class Collector(audit_plugin.Recorder):
    """On the controller: one record per test call (and per failed set-up or teardown) with its soak record.

    Writes {"seed", "examples", "exitstatus", "tests"} to --soak-record at the end of the session,
    and lists the soak's counts and failures in the terminal summary.
    """

    def __init__(self, config):
        super().__init__(config.getoption("soak_record") or "soak.json")
        self.config = config
        self.write = bool(config.getoption("soak_record"))

    def pytest_runtest_logreport(self, report):
        before = len(self.records)
        super().pytest_runtest_logreport(report)
        if len(self.records) > before:
            for key, value in report.user_properties:
                if key == RECORD_KEY:
                    self.records[-1]["soak"] = value

    def pytest_sessionfinish(self, session, exitstatus):
        if not self.write:
            return
        seed = self.config.getoption("hypothesis_seed", default=None)
        record = {
            "seed": None if seed is None else str(seed),
            "examples": self.config.getoption("soak_examples"),
            "examples_for": family_examples(self.config),
            "dtype": self.config.getoption("soak_dtype"),
            "targeted": bool(self.config.getoption("soak_targeted")),
            "exitstatus": int(exitstatus),
            "tests": self.records,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(record, indent=1))

    def pytest_terminal_summary(self, terminalreporter):
        soaked = [r for r in self.records if r.get("soak", {}).get("given")]
        if not soaked:
            return
        write = terminalreporter.write_line
        terminalreporter.section("soak")
        for record in soaked:
            soak = record["soak"]
            worst = "—" if soak["worst"] is None else f"{float(soak['worst']):.3g}"
            write(
                f"{record['nodeid']}: {soak['examples']} examples, {soak['failing_examples']} failing, "
                f"worst error ÷ tolerance when passing {worst}"
            )
            for failure in soak["failures"]:
                what = f" [{failure['property']}]" if "property" in failure else ""
                excess = "" if failure["excess"] is None else f" (error ÷ tolerance {float(failure['excess']):.3g})"
                write(f"  FAILED example {failure['example']}{what}{excess}: {failure['case']}")
                write("    " + (failure["message"].splitlines() or ["(no message)"])[0][:300])
            if soak["failure_count"] > len(soak["failures"]):
                write(f"  … {soak['failure_count'] - len(soak['failures'])} more failures not kept (--soak-keep)")
