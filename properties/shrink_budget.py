"""Shrinking bounded in time per test (a pytest plugin the suite's conftest registers): a broken torch fails fast under `ci`.

Hypothesis shrinks a failure for up to five minutes; a slow property (a compiled step, a framework)
can spend all of it. Under a profile with a budget (properties.profiles.SHRINK_BUDGET_SECONDS), once
a test has failed for that long, every example it has not already failed on passes without running:
the shrinker stops improving and reports the smallest failure found so far, which replays for real.
The failure then says that shrinking was cut short. Uses Hypothesis' public `inner_test` hook.
"""

from __future__ import annotations

import functools
import time
from typing import Callable, Optional

import pytest
from hypothesis import is_hypothesis_test, settings
from hypothesis.errors import UnsatisfiedAssumption

from properties.profiles import SHRINK_BUDGET_SECONDS


class ShrinkBudget:
    """Runs a test body until it has been failing for `seconds`; after that, only on examples it already failed on."""

    def __init__(self, body: Callable[..., object], seconds: float):
        self.body = body
        self.seconds = seconds
        self.first_failure: Optional[float] = None
        self.failed_on: set[str] = set()
        self.cut = False

    def spent(self) -> bool:
        """Whether the test has been failing for longer than the budget."""
        return self.first_failure is not None and time.monotonic() - self.first_failure >= self.seconds

    def __call__(self, *args, **kwargs):
        key = repr((args, sorted(kwargs.items())))
        if self.spent() and key not in self.failed_on:
            self.cut = True
            return None
        try:
            return self.body(*args, **kwargs)
        except UnsatisfiedAssumption:
            raise
        except Exception:
            self.failed_on.add(key)
            if self.first_failure is None:
                self.first_failure = time.monotonic()
            raise

    def as_test(self) -> Callable[..., object]:
        """This budget as a function that looks like the body to Hypothesis (name, signature)."""

        @functools.wraps(self.body)
        def bounded(*args, **kwargs):
            return self(*args, **kwargs)

        return bounded


BUDGET = pytest.StashKey[ShrinkBudget]()


def budget_seconds() -> Optional[float]:
    """The loaded profile's shrink budget (None: Hypothesis' own limit)."""
    name = settings.get_current_profile_name()
    return next((s for profile, s in SHRINK_BUDGET_SECONDS.items() if name == profile or name.startswith(f"{profile}-")), None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """Run a Hypothesis test's body under the profile's shrink budget, and put its own body back after."""
    test = getattr(item, "obj", None)
    seconds = budget_seconds()
    if seconds is None or test is None or not is_hypothesis_test(test):
        yield
        return
    body = test.hypothesis.inner_test
    item.stash[BUDGET] = budget = ShrinkBudget(body, seconds)
    test.hypothesis.inner_test = budget.as_test()
    try:
        yield
    finally:
        test.hypothesis.inner_test = body


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A failure whose shrinking was cut short says so."""
    outcome = yield
    report = outcome.get_result()
    budget = item.stash.get(BUDGET, None)
    if report.failed and call.when == "call" and budget is not None and budget.cut:
        note = f"shrinking stopped after {budget.seconds:g} s (the profile's budget): the example shown may not be minimal"
        if hasattr(report.longrepr, "addsection"):
            report.longrepr.addsection("shrink budget", note)
        else:
            report.longrepr = f"{report.longrepr}\n\n{note}"
