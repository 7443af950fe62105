"""Shrinking is bounded in time per test: once the budget is spent, the smallest failure found so far is reported and replays."""

from pathlib import Path

import pytest
from hypothesis import settings

from properties.profiles import SHRINK_BUDGET_SECONDS
from properties.shrink_budget import ShrinkBudget

pytest_plugins = ["pytester"]

ROOT_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

SHRINKS_TO_100 = """
from hypothesis import Phase, given, settings, strategies as st


@settings(database=None, phases=[Phase.generate, Phase.shrink])
@given(n=st.integers(0, 10**9))
def test_every_number_is_small(n):
    assert n < 100, f"drew {n}"
"""


def fails_on_odd(n):
    assert n % 2 == 0, f"{n} is odd"


def test_a_spent_budget_runs_only_the_examples_that_already_failed():
    budget = ShrinkBudget(fails_on_odd, seconds=0)
    assert budget(2) is None and not budget.cut
    with pytest.raises(AssertionError):
        budget(3)
    assert budget(5) is None and budget.cut, "a new example ran after the budget was spent"
    with pytest.raises(AssertionError, match="3 is odd"):
        budget(3)


def run(pytester, budget):
    """SHRINKS_TO_100 under the suite's conftest and the dev profile with this shrink budget; its output."""
    pytester.makeconftest(ROOT_CONFTEST.read_text(encoding="utf-8"))
    pytester.makepyfile(test_shrinking=SHRINKS_TO_100)
    profile = settings.get_current_profile_name()
    try:
        with pytest.MonkeyPatch.context() as patch:
            if budget is not None:
                patch.setitem(SHRINK_BUDGET_SECONDS, "dev", budget)
            result = pytester.runpytest("-p", "no:cacheprovider", "--hypothesis-profile=dev", "--hypothesis-seed=0")
    finally:
        settings.load_profile(profile)
    result.assert_outcomes(failed=1)
    return result.stdout.str()


def test_with_a_spent_budget_the_first_failure_is_reported_unshrunk_and_says_so(pytester):
    output = run(pytester, budget=0)
    assert "drew " in output and "drew 100" not in output, output[-2000:]
    assert "shrinking stopped after 0 s" in output, output[-2000:]
    assert "Flaky" not in output and "Unreliable" not in output, output[-2000:]


def test_without_a_budget_the_failure_shrinks_to_its_minimum(pytester):
    output = run(pytester, budget=None)
    assert "drew 100" in output and "shrinking stopped" not in output, output[-2000:]
