"""Negative controls: find the smallest example on which a check rejects a deliberately broken variant."""

from __future__ import annotations

from typing import Any, Callable

from hypothesis import HealthCheck, Phase, find, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample
from hypothesis.strategies import SearchStrategy

META_SETTINGS = settings(
    max_examples=200, database=None, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck)
)


def rejection(check: Callable[..., None], example: dict[str, Any]) -> str | None:
    """The AssertionError message check(**example) raises, or None when it passes."""
    try:
        check(**example)
    except AssertionError as error:
        return str(error)
    return None


def assert_rejects(
    check: Callable[..., None], *, shrink: bool = False, **strategies: SearchStrategy
) -> tuple[dict[str, Any], str]:
    """Fail unless `check` raises AssertionError on some drawn example; return that example (shrunk if asked)."""
    __tracebackhide__ = True
    drawn = st.fixed_dictionaries(strategies)
    phases = (Phase.generate, Phase.shrink) if shrink else (Phase.generate,)
    try:
        example = find(
            drawn, lambda kwargs: rejection(check, kwargs) is not None, settings=settings(META_SETTINGS, phases=phases)
        )
    except NoSuchExample:
        raise AssertionError(
            f"{check.__name__} accepted the broken variant on {META_SETTINGS.max_examples} examples: "
            "this property cannot fail, so it proves nothing"
        ) from None
    message = rejection(check, example)
    assert message is not None, "the shrunk counterexample passed on replay: the check is not deterministic"
    return example, message
