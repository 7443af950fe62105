"""check_recipe: Hypothesis draws examples until a property fails, shrinks it, and raises RecipeError saying what and why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from hypothesis import HealthCheck, Phase, errors, find, settings

from properties.compare import ComparisonError
from properties.recipes.causes import likely_causes
from properties.recipes.checks import PROPERTIES, RecipeProperty, failing
from properties.recipes.contract import check_contract, recipe_name
from properties.recipes.errors import RecipeError
from properties.recipes.examples import RecipeCase, recipe_cases
from properties.recipes.hyperparameters import scaler_supported
from properties.recipes.observation import Observation
from properties.recipes.options import RecipeOptions
from properties.threads import one_thread


@dataclass(frozen=True)
class RecipeReport:
    """A recipe that passed: its name, how many examples it ran on, the properties checked and the options."""

    recipe: str
    examples: int
    properties: tuple[str, ...]
    options: RecipeOptions

    def __str__(self) -> str:
        return (
            f"{self.recipe} passed {len(self.properties)} properties on {self.examples} examples "
            f"(derandomized: every run draws the same ones): {'; '.join(self.properties)}"
        )


def indent(text: str, prefix: str = "    ") -> str:
    """Every line after the first indented by `prefix`."""
    return text.replace("\n", "\n" + prefix)


def failure_message(recipe: Callable, observation: Observation, failures: list, causes: list[str], heading: str = "") -> str:
    """What failed, on which example, by how much, and the likely cause."""
    prop, error = failures[0]
    lines = [
        f"{recipe_name(recipe)} fails: {prop.sentence}",
        f"  {heading or 'example'}: {observation.example!r}",
        "  " + indent(str(error), "  "),
    ]
    lines += [f"  likely cause: {cause}" for cause in causes[:1]]
    lines += [f"  also: {cause}" for cause in causes[1:]]
    if len(failures) > 1 and prop.name != "runs":
        lines.append("  also failing on this example: " + "; ".join(p.sentence for p, _ in failures[1:]))
    return "\n".join(lines)


def comparison_of(error: AssertionError) -> Optional[ComparisonError]:
    """The numeric comparison failure a property's check raised, or None (a structural failure)."""
    return error if isinstance(error, ComparisonError) else None


def error_for(recipe: Callable, observation: Observation, failures: list, heading: str = "", tail: str = "") -> RecipeError:
    """The RecipeError for these failures of `recipe` on the observed example."""
    causes = likely_causes(observation)
    message = failure_message(recipe, observation, failures, causes, heading) + tail
    error = RecipeError(
        message,
        property=failures[0][0].name,
        example=observation.example,
        causes=tuple(causes),
        comparison=comparison_of(failures[0][1]),
    )
    if observation.run.error is not None:
        error.__cause__ = observation.run.error
    return error


def check_example(recipe: Callable, example: RecipeCase, properties: tuple[RecipeProperty, ...] = PROPERTIES) -> None:
    """Check every applicable property of `recipe` on one example; raise RecipeError naming the first that fails."""
    observation = Observation(recipe, example)
    failures = failing(observation, properties)
    if failures:
        raise error_for(recipe, observation, failures)


def search_settings(options: RecipeOptions) -> settings:
    """Derandomized, no database, no deadline, one bug per search: the same examples on every run, shrunk on failure
    (unless options.shrink is False: the first failing example, as drawn)."""
    return settings(
        max_examples=options.max_examples,
        database=None,
        derandomize=True,
        deadline=None,
        phases=(Phase.generate, Phase.shrink) if options.shrink else (Phase.generate,),
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )


def not_deterministic(recipe: Callable, locked: list[RecipeProperty], where: str) -> RecipeError:
    """The error for a recipe that failed on an example and then passed on the same example."""
    what = repr(locked[0].sentence) if locked else "a property"
    return RecipeError(
        f"{recipe_name(recipe)} failed {what} and then passed on the same example ({where}): "
        "the recipe is not deterministic — it reads state its arguments do not give it",
        property=locked[0].name if locked else "",
    )


def search(recipe: Callable, options: RecipeOptions, candidates: tuple[RecipeProperty, ...], calls: list[int]):
    """The shrunk example on which the first of `candidates` to fail fails, and that property; None when none fails."""
    locked: list[RecipeProperty] = []

    def fails(example: RecipeCase) -> bool:
        calls[0] += 1
        observation = Observation(recipe, example)
        if observation.run.error is not None and all(p.name != "runs" for p in candidates):
            return False  # the 'runs' property already reports a recipe that raises
        found = failing(observation, tuple(locked) or candidates)
        if found and not locked:
            locked.append(found[0][0])
        return bool(found)

    flaky = tuple(getattr(errors, name) for name in ("Flaky", "FlakyFailure") if hasattr(errors, name))
    try:
        example = find(recipe_cases(options), fails, settings=search_settings(options))
    except errors.NoSuchExample:
        return None
    except flaky as error:
        raise not_deterministic(recipe, locked, str(error).splitlines()[0]) from None
    return example, locked


def run_check(recipe: Callable, options: RecipeOptions) -> RecipeReport:
    """Check the contract, then search for a failing example, on one intra-op thread; raise RecipeError with it shrunk,
    or return a report."""
    __tracebackhide__ = True
    with one_thread():
        return check_every_property(recipe, options)


def check_every_property(recipe: Callable, options: RecipeOptions) -> RecipeReport:
    """Check the contract, then search for a failing example; raise RecipeError with it shrunk, or return a report.

    With options.all_failures the search goes on without each property found failing, so every
    failing property is reported with its own shrunk counterexample.
    """
    __tracebackhide__ = True
    check_contract(recipe, options.extras())
    if options.scaler and not scaler_supported():
        raise RuntimeError("scaler=True needs torch.amp.GradScaler on CPU (torch ≥ 2.3)")
    calls = [0]
    applicable = tuple(p for p in PROPERTIES if p.applies(options))
    found: list[RecipeError] = []
    candidates = PROPERTIES
    while candidates:
        result = search(recipe, options, candidates, calls)
        if result is None:
            break
        example, locked = result
        found.append(shrunk_error(recipe, options, example, locked))
        if not options.all_failures:
            break
        candidates = tuple(p for p in candidates if p is not locked[0])
    if not found:
        return RecipeReport(recipe_name(recipe), calls[0], tuple(p.sentence for p in applicable), options)
    first, others = found[0], tuple(found[1:])
    if others:
        sections = [str(first)] + [str(error) for error in others]
        first = RecipeError(
            f"{len(found)} recipe properties fail:\n\n" + "\n\n".join(sections),
            property=first.property,
            example=first.example,
            causes=first.causes,
            others=others,
            comparison=first.comparison,
        )
    raise first


def shrunk_error(recipe: Callable, options: RecipeOptions, example: RecipeCase, locked: list[RecipeProperty]) -> RecipeError:
    """The RecipeError for the property `locked` names on its shrunk example, with how to reproduce it."""
    observation = Observation(recipe, example)
    failures = failing(observation)
    if not any(prop is locked[0] for prop, _ in failures):
        return not_deterministic(recipe, locked, repr(example))
    failures.sort(key=lambda item: item[0] is not locked[0])
    call = ", ".join(filter(None, [recipe_name(recipe), options.call()]))
    tail = (
        f"\n  reproduce: check_recipe({call}) draws the same examples on every run (derandomized); "
        "check_example(recipe, error.example) replays this one"
    )
    found = "counterexample (shrunk)" if options.shrink else "counterexample (as drawn: shrink=False)"
    return error_for(recipe, observation, failures, found, tail)
