"""Seeds are what the header says: a dev failure's reproduce line carries the seed that reproduces it; ci honours a given seed."""

import re
import shlex
from pathlib import Path

import pytest
from hypothesis import settings

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.meta

ROOT_CONFTEST = Path(__file__).resolve().parents[2] / "conftest.py"

RECORDS_DRAWS = """
from pathlib import Path
from hypothesis import Phase, given, settings, strategies as st


@settings(database=None, max_examples=10, phases=[Phase.generate])
@given(n=st.integers(0, 10**9))
def test_draws(n):
    with Path("drawn.txt").open("a") as drawn:
        drawn.write(f"{n}\\n")
"""

FAILS_ON_ITS_FIRST_LARGE_DRAW = """
from hypothesis import Phase, given, settings, strategies as st


@settings(database=None, phases=[Phase.generate])
@given(n=st.integers(0, 10**9))
def test_every_number_is_small(n):
    assert n < 100, f"drew {n}"
"""


def run(pytester, source: str, *args: str):
    """Run one test file under the suite's conftest, in process; the result (the outer profile is loaded again after)."""
    pytester.makeconftest(ROOT_CONFTEST.read_text(encoding="utf-8"))
    pytester.makepyfile(test_seeded=source)
    profile = settings.get_current_profile_name()
    try:
        return pytester.runpytest("-p", "no:cacheprovider", *args)
    finally:
        settings.load_profile(profile)


def drawn(pytester, *args: str) -> list[str]:
    """The values RECORDS_DRAWS draws in one run with these arguments."""
    record = pytester.path / "drawn.txt"
    record.unlink(missing_ok=True)
    run(pytester, RECORDS_DRAWS, *args).assert_outcomes(passed=1)
    return record.read_text().split()


def reproduce_line(output: str) -> list[str]:
    """The arguments of the printed reproduce command (without `pytest`)."""
    found = re.search(r"^pytest ('[^']+'.*)$", output, re.MULTILINE)
    assert found, f"no reproduce command; output:\n{output[-2000:]}"
    return shlex.split(found.group(1))


def test_a_dev_failure_without_a_seed_prints_a_reproduce_line_whose_seed_fails_the_same_way(pytester):
    first = run(pytester, FAILS_ON_ITS_FIRST_LARGE_DRAW, "--hypothesis-profile=dev")
    first.assert_outcomes(failed=1)
    output = first.stdout.str()
    header_seed = re.search(r"seed (\d+) \(drawn for this session", output)
    assert header_seed, f"the header names no drawn seed:\n{output[:1500]}"
    arguments = reproduce_line(output)
    assert f"--hypothesis-seed={header_seed.group(1)}" in arguments and "--hypothesis-profile=dev" in arguments, arguments
    again = run(pytester, FAILS_ON_ITS_FIRST_LARGE_DRAW, *arguments)
    again.assert_outcomes(failed=1)
    failure = re.search(r"drew \d+", output).group(0)
    assert failure in again.stdout.str(), f"the reproduce line did not fail with {failure!r}"


def test_the_same_drawn_seed_draws_the_same_examples_and_another_seed_others(pytester):
    once, twice = drawn(pytester, "--hypothesis-seed=11"), drawn(pytester, "--hypothesis-seed=11")
    assert once == twice
    assert drawn(pytester, "--hypothesis-seed=12") != once


def test_a_seed_given_under_the_derandomized_ci_profile_is_honoured_and_the_header_says_so(pytester):
    derandomized = drawn(pytester, "--hypothesis-profile=ci")
    assert drawn(pytester, "--hypothesis-profile=ci") == derandomized
    one, two = (
        drawn(pytester, "--hypothesis-profile=ci", "--hypothesis-seed=1"),
        drawn(pytester, "--hypothesis-profile=ci", "--hypothesis-seed=2"),
    )
    assert one != two and derandomized not in (one, two)
    output = run(pytester, RECORDS_DRAWS, "--hypothesis-profile=ci", "--hypothesis-seed=1").stdout.str()
    assert "seed 1 (--hypothesis-seed; the 'ci' profile's derandomize is off for this run)" in output, output[:1500]


def test_the_reproduce_line_names_the_registered_profile_not_a_generated_verbosity_one(pytester):
    result = run(pytester, FAILS_ON_ITS_FIRST_LARGE_DRAW, "--hypothesis-profile=ci", "--hypothesis-verbosity=verbose")
    result.assert_outcomes(failed=1)
    arguments = reproduce_line(result.stdout.str())
    assert arguments[1:] == ["--hypothesis-profile=ci"], arguments


@pytest.mark.commands
def test_pytest_xdist_workers_draw_from_the_seed_the_controller_prints(pytester):
    result = run(pytester, FAILS_ON_ITS_FIRST_LARGE_DRAW, "--hypothesis-profile=dev", "-n", "2")
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    header_seed = re.search(r"seed (\d+) \(drawn for this session", output).group(1)
    assert f"--hypothesis-seed={header_seed}" in reproduce_line(output)
