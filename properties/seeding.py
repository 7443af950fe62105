"""How the suite's examples are seeded, and the command that replays a failure (a pytest plugin the suite's conftest registers).

A session under a profile that is not derandomized and without --hypothesis-seed draws one seed
and passes it on exactly as --hypothesis-seed would (pytest-xdist workers receive the same one),
so every failure's reproduce line carries the seed that reproduces it. Under a derandomized
profile --hypothesis-seed is honoured: derandomize is turned off for that run, which Hypothesis
alone would not do (a derandomized test ignores the seed).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Optional

import pytest
from hypothesis import settings
from hypothesis.errors import InvalidArgument

GIVEN = "--hypothesis-seed"
DRAWN = "drawn for this session"
DERANDOMIZED = "derandomized"
WORKER_SEED = "grad_accumulation_seed"
"""The pytest-xdist workerinput key that carries the controller's drawn seed to each worker."""


@dataclass(frozen=True)
class Seeding:
    """The registered profile a run loaded, the seed in force (None: derandomized) and where it came from."""

    profile: str
    seed: Optional[str]
    source: str
    derandomize_turned_off: bool = False

    def header(self) -> str:
        """The report header's words for it."""
        if self.source == DERANDOMIZED:
            return (
                "seed derandomized: each test's examples follow from its name, every run draws the same ones "
                f"({GIVEN}=N turns derandomize off and draws from N)"
            )
        if self.source == DRAWN:
            return f"seed {self.seed} (drawn for this session; each failure's reproduce line carries it)"
        turned_off = f"; the {self.profile!r} profile's derandomize is off for this run" if self.derandomize_turned_off else ""
        return f"seed {self.seed} ({GIVEN}{turned_off})"

    def reproduce(self, nodeid: str) -> str:
        """The command that re-runs one test with this profile and seed."""
        command = f"pytest '{nodeid}' --hypothesis-profile={self.profile}"
        return command + (f" {GIVEN}={self.seed}" if self.seed is not None else "")

    def summary(self) -> dict:
        """The summary JSON's fields for it."""
        return {
            "profile": self.profile,
            "seed": self.seed,
            "seeding": self.source,
            "derandomized": self.source == DERANDOMIZED,
            "derandomize_turned_off": self.derandomize_turned_off,
        }


SEEDING = pytest.StashKey[Seeding]()
RANDOM_PER_TEST = "random per test"


def current(config: pytest.Config) -> Seeding:
    """This run's seeding: the suite's (its conftest loads this plugin), else what Hypothesis alone does."""
    if SEEDING in config.stash:
        return config.stash[SEEDING]
    profile = config.getoption("hypothesis_profile", default=None) or settings.get_current_profile_name()
    given = config.getoption("hypothesis_seed", default=None)
    if settings.default.derandomize:
        return Seeding(profile, None, DERANDOMIZED)  # Hypothesis ignores a given seed under derandomize
    return Seeding(profile, None if given is None else str(given), RANDOM_PER_TEST if given is None else GIVEN)


def derandomized(profile: str) -> bool:
    """Whether a registered profile derandomizes (False for a name Hypothesis will refuse: it says why itself)."""
    try:
        return settings.get_profile(profile).derandomize
    except InvalidArgument:
        return False


def choose(config: pytest.Config) -> None:
    """Before Hypothesis reads --hypothesis-seed (the conftest's tryfirst pytest_configure): note the registered profile, draw a seed where none is given."""
    profile = config.getoption("hypothesis_profile", default=None) or settings.get_current_profile_name()
    given = config.getoption("hypothesis_seed", default=None)
    from_controller = getattr(config, "workerinput", {}).get(WORKER_SEED)
    if given is not None:
        seeding = Seeding(profile, str(given), GIVEN, derandomize_turned_off=derandomized(profile))
    elif from_controller is not None:
        seeding = Seeding(profile, from_controller, DRAWN)
    elif derandomized(profile):
        seeding = Seeding(profile, None, DERANDOMIZED)
    else:
        seeding = Seeding(profile, str(secrets.randbelow(10**6)), DRAWN)
    if seeding.seed is not None:
        config.option.hypothesis_seed = seeding.seed
    config.stash[SEEDING] = seeding


PROFILE_BEFORE = pytest.StashKey[str]()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """After Hypothesis loaded the profile: a given seed turns a derandomized profile's derandomize off."""
    if session.config.stash[SEEDING].derandomize_turned_off and settings.default.derandomize:
        current = settings.get_current_profile_name()
        session.config.stash[PROFILE_BEFORE] = current
        settings.register_profile(f"{current}-with-seed", parent=settings.get_profile(current), derandomize=False)
        settings.load_profile(f"{current}-with-seed")


def pytest_unconfigure(config: pytest.Config) -> None:
    """Load the profile the session started with again."""
    if PROFILE_BEFORE in config.stash:
        settings.load_profile(config.stash[PROFILE_BEFORE])


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """pytest-xdist: every worker draws from the controller's seed."""
    seeding = node.config.stash[SEEDING]
    if seeding.source == DRAWN:
        node.workerinput[WORKER_SEED] = seeding.seed


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """On a failure, the command that re-runs exactly this test, inside the failure's text (so JUnit's <failure> holds it).

    Recipe checks (pytest --recipe) print their own.
    """
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when == "call" and not item.config.getoption("recipe", default=None):
        section = item.config.stash[SEEDING].reproduce(item.nodeid) + "\n(or the @reproduce_failure line above)"
        if hasattr(report.longrepr, "addsection"):
            report.longrepr.addsection("reproduce", section)
        else:
            report.longrepr = f"{report.longrepr}\n\nreproduce: {section}"
