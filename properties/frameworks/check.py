"""Check a framework configuration with the recipe checker: search for a counterexample, tell a registered deviation apart.

Every example is observed exactly as check_recipe observes a loop (`FrameworkObservation`) and
judged by the recipe properties (`properties.recipes.checks`). A failing example is a *known
deviation* when a deviation registered for the configuration's setting and the installed framework
version (deviations.py) covers every failing property and its behaviour reproduces the run step for
step (behaviours.py); any other failure is a counterexample. The setting is the configuration's key
(Lightning's accumulate_grad_batches, how the Accelerator gets k, the Trainer's loss path), so a
user's module or loop under that setting is excused only when the framework's registered behaviour,
and nothing the user's code adds, reproduces the run. The search first tries the measured edge
examples (a short last batch, a short last window), then draws with Hypothesis (derandomized: the
same examples on every run), and shrinks what it found.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from hypothesis import HealthCheck, Phase, errors, find, settings

from properties.frameworks.behaviours import BEHAVIOURS, unexplained
from properties.frameworks.cases import FrameworkCase, FrameworkObservation, cases_for, with_call
from properties.frameworks.configuration import Configuration, FrameworkRun, NotAvailable
from properties.frameworks.deviations import Deviation, registered
from properties.models import ModelSpec
from properties.recipes.causes import likely_causes, vector
from properties.recipes.checks import failing
from properties.recipes.errors import RecipeError
from properties.recipes.search import comparison_of, failure_message
from properties.threads import one_thread

DEFAULT_EXAMPLES = 30
# The measured set-ups: (dataset rows, batch size, k) with a short last batch or a short last window.
EDGE_SETUPS = ((10, 2, 2), (7, 3, 2), (7, 2, 2), (5, 2, 3))
EDGE_MODEL = ModelSpec("linear", 3, 1)
# Token sequences' lengths in the edge examples (row i has EDGE_LENGTHS[i]): equal batches count unequal tokens.
EDGE_LENGTHS = (3, 1, 4, 2, 5, 1, 3, 2, 4, 5)


class FrameworkError(RecipeError):
    """A framework configuration failed a recipe property: `.configuration`, `.deviation` (None: not a registered one)."""

    def __init__(self, message: str, *, configuration=None, deviation=None, ratios: tuple = (), **kwargs):
        super().__init__(message, **kwargs)
        self.configuration = configuration
        self.deviation = deviation
        self.ratios = tuple(ratios)


class KnownDeviation(FrameworkError):
    """The only failures found are a deviation registered for this framework version: documented behaviour, not a new bug."""


@dataclass(frozen=True)
class Verdict:
    """One example judged: 'pass', 'deviation' or 'fail', the failing properties, the deviation, the ratio per step."""

    outcome: str
    properties: tuple[str, ...] = ()
    deviation: Optional[Deviation] = None
    ratios: tuple[float, ...] = ()


@dataclass
class Finding:
    """An example (shrunk when `shrunk`), its verdict and, when it fails, the error that reports it."""

    example: FrameworkCase
    verdict: Verdict
    error: Optional[FrameworkError]
    shrunk: bool


@dataclass
class Conformance:
    """A configuration checked on `examples` examples: a counterexample no deviation explains, a reproduced deviation,
    and the properties that failed on any example judged (`failing`) or failed only as the deviation (`deviating`)."""

    configuration: Configuration
    version: Optional[str]
    examples: int
    failure: Optional[Finding] = None
    deviation: Optional[Finding] = None
    expected: Optional[Deviation] = None
    failing: frozenset = field(default_factory=frozenset)
    deviating: frozenset = field(default_factory=frozenset)

    def result(self, prop: str) -> str:
        """'fail', 'known deviation' or 'pass' for one recipe property, over every example judged."""
        if prop in self.failing:
            return "fail"
        if prop in self.deviating:
            return "known deviation"
        return "pass"

    def raise_for_outcome(self) -> "Conformance":
        """Raise the counterexample's FrameworkError, else KnownDeviation for a reproduced deviation; return self if all pass."""
        __tracebackhide__ = True
        if self.failure is not None:
            raise self.failure.error
        if self.deviation is not None:
            raise self.deviation.error
        return self


def step_ratios(observation: FrameworkObservation) -> tuple[float, ...]:
    """‖.grad‖ ÷ ‖the window's mean-loss gradient‖ at each optimizer step (1 = right), rounded to 3 figures."""
    ratios = []
    for i, step in enumerate(observation.run.steps):
        expected = observation.expected(i)
        names = [name for name, g in expected.gradient.items() if g is not None]
        want = float(vector(expected.gradient, names, expected.gradient).norm())
        got = float(vector(step.grads, names, expected.gradient).norm())
        ratios.append(float(f"{got / want:.3g}") if want else float("nan"))
    return tuple(ratios)


def edge_example(configuration: Configuration, rows: int, batch_size: int, k: int) -> FrameworkCase:
    """N rows in batches of B, k a window, one epoch, seed 0: Linear(3→1) rows, token sequences of EDGE_LENGTHS, or the
    user's set-up's edge data of EDGE_LENGTHS (each at least 2, so that a causal LM counts a token in every row)."""
    if configuration.user is not None:
        lengths = tuple(max(2, n) for n in EDGE_LENGTHS[:rows])
        return FrameworkCase.of_user(configuration.user, configuration.user.edge_data(lengths), batch_size, k)
    if configuration.data == "tokens":
        return FrameworkCase.of_tokens(EDGE_LENGTHS[:rows], batch_size, k)
    return FrameworkCase.of(EDGE_MODEL, rows, batch_size, k)


class Search:
    """The examples of one configuration, observed once each and judged against the registered deviations."""

    def __init__(self, configuration: Configuration):
        self.configuration = configuration
        self.version = configuration.framework.version()
        framework = configuration.framework.distribution
        self.expected = registered(framework, configuration.key, self.version)
        self.verdicts: dict[FrameworkCase, Verdict] = {}
        self.calls = 0

    def observe(self, example: FrameworkCase) -> FrameworkObservation:
        """The recipe checker's observation of the framework run on `example` (recorded where the framework ran it)."""
        if self.configuration.observe is not None:
            return self.configuration.observe(example)
        return FrameworkObservation(FrameworkRun(self.configuration, example), example)

    def judge(self, example: FrameworkCase) -> Verdict:
        """Run the framework on `example` (once; later calls reuse the verdict) and judge it."""
        if example not in self.verdicts:
            self.calls += 1
            self.verdicts[example] = self.verdict(self.observe(example))
        return self.verdicts[example]

    def verdict(self, observation: FrameworkObservation) -> Verdict:
        failures = failing(observation)
        ratios = step_ratios(observation) if observation.run.error is None else ()
        if not failures:
            return Verdict("pass", ratios=ratios)
        names = tuple(prop.name for prop, _ in failures)
        deviation = self.expected
        if deviation is not None and set(names) <= set(deviation.properties):
            if unexplained(observation, BEHAVIOURS[deviation.behaviour]) is None:
                return Verdict("deviation", names, deviation, ratios)
        return Verdict("fail", names, None, ratios)

    def edge_examples(self) -> list[FrameworkCase]:
        """The measured set-ups with a short last batch or window, on Linear(3→1) (token data: sequences of EDGE_LENGTHS),
        float64, seed 0, one epoch."""
        if self.configuration.edges is not None:
            return self.configuration.edges(self.configuration.call)
        user = self.configuration.user
        if user is not None and user.edge_data is None:
            return []
        return [with_call(edge_example(self.configuration, *setup), self.configuration.call) for setup in EDGE_SETUPS]

    def find(self, outcome: str, max_examples: int, shrink: bool) -> Optional[FrameworkCase]:
        """The first drawn example judged `outcome` (shrunk when asked), or None within max_examples."""
        phases = (Phase.generate, Phase.shrink) if shrink else (Phase.generate,)
        search_settings = settings(
            max_examples=max_examples,
            database=None,
            derandomize=True,
            deadline=None,
            phases=phases,
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
        )
        try:
            return find(cases_for(self.configuration), lambda e: self.judge(e).outcome == outcome, settings=search_settings)
        except errors.NoSuchExample:
            return None

    def finding(self, example: FrameworkCase, shrunk: bool) -> Finding:
        """The verdict on `example` and the error that reports a failure (None when it passes)."""
        observation = self.observe(example)
        verdict = self.verdict(observation)
        error = None if verdict.outcome == "pass" else self.error(observation, verdict, shrunk)
        return Finding(example, verdict, error, shrunk)

    def error(self, observation: FrameworkObservation, verdict: Verdict, shrunk: bool) -> FrameworkError:
        """The FrameworkError (KnownDeviation for a registered deviation) saying what failed, where, and why."""
        failures = failing(observation)
        failures.sort(key=lambda item: item[0].name != verdict.properties[0])
        causes = framework_causes(self, observation, verdict) + likely_causes(observation)
        heading = "counterexample (shrunk)" if shrunk else "counterexample"
        message = failure_message(FrameworkRun(self.configuration, observation.example), observation, failures, causes, heading)
        if verdict.ratios:
            message += "\n  ‖.grad‖ ÷ ‖window's mean-loss gradient‖ per step: " + ", ".join(f"{r:g}" for r in verdict.ratios)
        cls = KnownDeviation if verdict.outcome == "deviation" else FrameworkError
        error = cls(
            message,
            property=verdict.properties[0],
            example=observation.example,
            causes=tuple(causes),
            configuration=self.configuration,
            deviation=verdict.deviation,
            ratios=verdict.ratios,
            comparison=comparison_of(failures[0][1]),
        )
        if observation.run.error is not None:
            error.__cause__ = observation.run.error
        return error


def framework_causes(search: Search, observation: FrameworkObservation, verdict: Verdict) -> list[str]:
    """The registered deviation that explains the run, or what the framework did, in its own terms."""
    if verdict.deviation is not None:
        deviation = verdict.deviation
        return [f"registered deviation of {deviation.framework} {deviation.versions}: {deviation.what} — {deviation.source}"]
    causes = []
    for behaviour in BEHAVIOURS.values():
        if unexplained(observation, behaviour) is None:
            causes.append(
                f"{search.configuration.framework.distribution} stepped exactly as the behaviour '{behaviour.name}' predicts "
                f"({behaviour.description}), but no deviation registered for this setting and version covers this failure"
            )
    if search.configuration.hints is not None:
        causes += search.configuration.hints(observation)
    return causes


def replayed(search: Search, example: FrameworkCase, shrunk: bool, outcome: str) -> Finding:
    """The finding on `example`, run once more; a FrameworkError if it is no longer judged `outcome` (not deterministic)."""
    finding = search.finding(example, shrunk)
    if finding.verdict.outcome != outcome:
        message = (
            f"{FrameworkRun(search.configuration, example)!r} was judged {outcome!r} and then {finding.verdict.outcome!r} "
            f"on the same example ({example!r}): the framework run is not deterministic"
        )
        finding.error = FrameworkError(message, property="runs", example=example, configuration=search.configuration)
        finding.verdict = Verdict("fail", ("runs",))
    return finding


@one_thread()
def check_configuration(
    configuration: Configuration,
    *,
    max_examples: int = DEFAULT_EXAMPLES,
    shrink: bool = True,
    shrink_deviation: bool = False,
) -> Conformance:
    """Search for a counterexample no registered deviation explains; note a registered deviation that reproduces.

    The edge examples come first, then `max_examples` drawn ones. With shrink, a counterexample is
    shrunk; with shrink_deviation, the reproduced deviation's example is shrunk too (the report's).
    """
    missing = configuration.framework.missing()
    if missing is not None:
        raise ModuleNotFoundError(missing)
    unavailable = configuration.missing()
    if unavailable is not None:
        raise NotAvailable(unavailable)
    search = Search(configuration)
    failing_edge = None
    for example in search.edge_examples():
        if search.judge(example).outcome == "fail" and failing_edge is None:
            failing_edge = example
    failed = search.find("fail", max_examples, shrink)
    result = Conformance(configuration, search.version, 0, expected=search.expected)
    if failed is not None or failing_edge is not None:
        result.failure = replayed(search, failed if failed is not None else failing_edge, failed is not None and shrink, "fail")
    seen = next((e for e, v in search.verdicts.items() if v.outcome == "deviation"), None)
    if seen is not None:
        shrunk = search.find("deviation", max_examples, shrink=True) if shrink_deviation else None
        result.deviation = replayed(search, shrunk if shrunk is not None else seen, shrunk is not None, "deviation")
    result.examples = search.calls
    verdicts = search.verdicts.values()
    result.failing = frozenset(p for v in verdicts if v.outcome == "fail" for p in v.properties)
    result.deviating = frozenset(p for v in verdicts if v.outcome == "deviation" for p in v.properties)
    return result


def check_framework(configuration: Configuration, *, max_examples: int = DEFAULT_EXAMPLES, shrink: bool = True) -> Conformance:
    """Check a configuration; raise FrameworkError for a counterexample, KnownDeviation when only a registered deviation fails."""
    __tracebackhide__ = True
    return check_configuration(configuration, max_examples=max_examples, shrink=shrink).raise_for_outcome()
