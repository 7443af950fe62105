"""A failing property prints how to reproduce it: the shrunk Case, the @reproduce_failure blob and the command."""

from pathlib import Path

import pytest
from hypothesis import settings

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.meta

ROOT_CONFTEST = Path(__file__).resolve().parents[2] / "conftest.py"

FAILING_PROPERTY = """
from hypothesis import Phase, given, settings
from properties.models import ModelSpec
from properties.strategies import batch_splits, cases


@settings(database=None, phases=[Phase.generate, Phase.shrink])
@given(case=cases(models=ModelSpec("linear", 2, 1), sizes=batch_splits(max_k=3)))
def test_every_case_is_a_single_micro_batch(case):
    assert len(case.sizes) == 1, f"{len(case.sizes)} micro-batches"
"""


def run_failing(pytester, source: str, *args: str) -> str:
    """Run one failing test file under the suite's conftest (dev profile), in process; its output."""
    pytester.makeconftest(ROOT_CONFTEST.read_text(encoding="utf-8"))
    pytester.makepyfile(test_failing=source)
    profile = settings.get_current_profile_name()
    try:
        result = pytester.runpytest("-p", "no:cacheprovider", "--hypothesis-profile=dev", *args)
    finally:
        settings.load_profile(profile)
    result.assert_outcomes(failed=1)
    return result.stdout.str()


def test_a_failing_property_prints_the_shrunk_case_the_reproduce_blob_and_the_command(pytester):
    output = run_failing(pytester, FAILING_PROPERTY, "--assert=plain", "--hypothesis-seed=3")
    assert "micro-batches [1, 1], seed 0" in output, "the shrunk Case is not printed as one line"
    assert "@reproduce_failure(" in output, "no @reproduce_failure blob"
    nodeid = "test_failing.py::test_every_case_is_a_single_micro_batch"
    command = f"pytest '{nodeid}' --hypothesis-profile=dev --hypothesis-seed=3"
    assert command in output, f"no reproduce command; output:\n{output[-2000:]}"


WRONG_PROCEDURE = """
from hypothesis import Phase, given, settings
from properties import accumulate as A
from properties import batch_splits, cases, check_accumulation_matches_full_batch, model_specs


@settings(database=None, phases=[Phase.generate, Phase.shrink], max_examples=20)
@given(case=cases(models=model_specs(["linear"]), sizes=batch_splits(min_k=2, max_k=3)))
def test_dividing_by_k_accumulates_to_the_full_batch(case):
    check_accumulation_matches_full_batch(case, A.UNSCALED_MEANS)
"""


def test_a_failing_check_shows_its_message_and_no_frame_of_the_library(pytester):
    output = run_failing(pytester, WRONG_PROCEDURE, "--tb=long", "--hypothesis-seed=1")
    assert "largest |actual − expected|" in output and "error ÷ tolerance" in output, output[-2000:]
    library = [line for line in output.splitlines() if "properties/" in line and line.rstrip().endswith("Error")]
    assert not library, f"library frames in the traceback: {library}"
