"""Strategy functions in Hypothesis' own convention: arguments are checked when the strategy is first used, not built."""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

from hypothesis import strategies as st

F = TypeVar("F", bound=Callable)


def lazy_strategy(function: F) -> F:
    """`function(*args, **kwargs)` → a strategy that calls it on first use (a draw, or `.validate()`).

    As with `hypothesis.strategies`' own functions, a bad argument raises InvalidArgument in the test
    that uses the strategy, not at import of the module that builds it, and no work (a dtype probe,
    say) is done for a strategy that is never drawn. Built on the public `st.deferred`.
    """

    @functools.wraps(function)
    def lazily(*args, **kwargs):
        return st.deferred(lambda: function(*args, **kwargs))

    return lazily  # type: ignore[return-value]
