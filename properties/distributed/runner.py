"""Run catalogue properties with Hypothesis on a world (the rank pool or a launched one): one result per property."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from hypothesis import HealthCheck, given, reporting, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from properties.distributed.catalogue import Property
from properties.distributed.launched import WorldBroken


@dataclass
class Result:
    """A property's outcome (passed, failed, skipped, not run), its runs (examples and shrinks), seconds and message."""

    family: str
    name: str
    outcome: str
    runs: int = 0
    seconds: float = 0.0
    message: str = ""
    headline: str = ""

    @property
    def id(self) -> str:
        """family.name"""
        return f"{self.family}.{self.name}"

    def as_dict(self) -> dict:
        """The result as plain JSON values."""
        return {"id": self.id, **asdict(self)}


def run_property(world, prop: Property, *, examples: int, seed: int, echo=print) -> Result:
    """Draw up to `examples` cases of world sizes 2…W and check each; a failure is shrunk and its counterexample kept.

    WorldBroken (a rank raised, died or hung) propagates: the world cannot run another example.
    """
    reason = prop.unavailable()
    if reason is not None:
        return Result(prop.family, prop.name, "skipped", message=reason, headline=reason)
    runs, lines = 0, []

    def report(text) -> None:
        lines.append(str(text))
        echo(f"{prop.family}.{prop.name}: {text}")

    def check(case):
        nonlocal runs
        runs += 1
        prop.check(world, case)

    check.__name__ = check.__qualname__ = f"{prop.family}__{prop.name}".replace("-", "_")  # how Hypothesis names it
    check = given(case=prop.cases(st.integers(2, world.world_size)))(check)
    check = hypothesis_seed(seed)(check)
    check = settings(
        max_examples=examples, deadline=None, database=None, print_blob=False, suppress_health_check=list(HealthCheck)
    )(check)
    started = time.monotonic()
    try:
        with reporting.with_reporter(report):
            check()
    except WorldBroken:
        raise
    except Exception as error:  # noqa: BLE001 - the property's verdict
        failures = [error, *getattr(error, "exceptions", ())]  # Hypothesis groups distinct failures, each with its example
        text = "\n".join([*lines, *("\n".join([*getattr(e, "__notes__", []), f"{type(e).__name__}: {e}"]) for e in failures)])
        echo(f"{prop.family}.{prop.name} FAILED:\n{text}")
        headline = f"{type(error).__name__}: {error}".splitlines()[0]
        return Result(prop.family, prop.name, "failed", runs, round(time.monotonic() - started, 2), text, headline)
    return Result(prop.family, prop.name, "passed", runs, round(time.monotonic() - started, 2))


def run_all(world, props: list[Property], *, examples: int, seed: int, echo=print) -> list[Result]:
    """Every property in order; after a broken world the one it broke in fails with the ranks' report, the rest are not run."""
    results: list[Result] = []
    for index, prop in enumerate(props):
        started = time.monotonic()
        try:
            results.append(run_property(world, prop, examples=examples, seed=seed, echo=echo))
        except WorldBroken as broken:
            text, seconds = str(broken), round(time.monotonic() - started, 2)
            echo(f"{prop.family}.{prop.name} FAILED:\n{text}")
            results.append(Result(prop.family, prop.name, "failed", 0, seconds, text, text.splitlines()[0]))
            reason = f"not run: the group broke in {prop.family}.{prop.name}"
            results += [Result(p.family, p.name, "not run", message=reason, headline=reason) for p in props[index + 1 :]]
            break
    return results


def verdict(results: list[Result]) -> int:
    """The exit code: 1 when any property failed or did not run, else 0."""
    return int(any(result.outcome in ("failed", "not run") for result in results))
