"""Hypothesis profiles: dev (default, fast), ci (derandomized, more examples), thorough (nightly).

No profile has a deadline: on a loaded 2-core machine a 2 ms example can take seconds, and a
deadline then fails a sound torch. Hung collectives have their own timeouts (properties/distributed).
Under `ci` shrinking is bounded in time per test, so that a broken torch fails fast.
"""

from __future__ import annotations

import os

from hypothesis import settings

DEV_EXAMPLES = 15
PROFILES = {
    "dev": dict(max_examples=DEV_EXAMPLES, deadline=None, print_blob=True),
    "ci": dict(max_examples=4 * DEV_EXAMPLES, derandomize=True, deadline=None, database=None, print_blob=True),
    "thorough": dict(max_examples=20 * DEV_EXAMPLES, deadline=None, print_blob=True),
}
DEFAULT_PROFILE = "dev"
SHRINK_BUDGET_SECONDS = {"ci": 10.0}
"""Seconds a failing test may spend shrinking, per profile (properties/shrink_budget.py); elsewhere Hypothesis' own limit."""


def examples(fraction: float, *, at_least: int = 2) -> int:
    """A share of the loaded profile's max_examples, for properties whose examples are slow (compilation, frameworks)."""
    return max(at_least, round(settings.default.max_examples * fraction))


def thorough() -> bool:
    """Whether the thorough profile is loaded (slow variants, such as inductor, run only there)."""
    return settings.get_current_profile_name() == "thorough"


def register_profiles() -> None:
    """Register every profile (on Hypothesis' defaults, whichever is loaded) and load the one HYPOTHESIS_PROFILE names (dev when unset)."""
    for name, options in PROFILES.items():
        settings.register_profile(name, parent=settings.get_profile("default"), **options)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", DEFAULT_PROFILE))
