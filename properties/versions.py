"""Documented behaviour changes of torch, keyed by version: the one place the suite encodes them."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch


def parse_version(text: str) -> tuple[int, int, int]:
    """'2.13.0+cpu' → (2, 13, 0); pre-release and local suffixes are ignored."""
    numbers = [int(part) for part in re.findall(r"\d+", text.split("+")[0])[:3]]
    return tuple(numbers + [0] * (3 - len(numbers)))  # type: ignore[return-value]


INSTALLED = parse_version(torch.__version__)


@dataclass(frozen=True)
class Change:
    """A documented change: `before` up to (not including) version `since`, `after` from it on."""

    name: str
    since: str
    before: object
    after: object
    source: str

    def expected(self, version: tuple[int, int, int] = INSTALLED) -> object:
        """The documented value for the given torch version."""
        return self.after if version >= parse_version(self.since) else self.before


ZERO_GRAD_DEFAULT_SET_TO_NONE = Change(
    name="zero_grad() default set_to_none",
    since="2.0.0",
    before=False,
    after=True,
    source="torch 2.0 release notes: Module.zero_grad and Optimizer.zero_grad default to set_to_none=True",
)

POST_ACCUMULATE_GRAD_HOOK = Change(
    name="Tensor.register_post_accumulate_grad_hook exists",
    since="2.1.0",
    before=False,
    after=True,
    source="torch 2.1 release notes: new Tensor.register_post_accumulate_grad_hook",
)

CHANGES = (ZERO_GRAD_DEFAULT_SET_TO_NONE, POST_ACCUMULATE_GRAD_HOOK)


def has_post_accumulate_grad_hook() -> bool:
    """Whether the installed torch documents Tensor.register_post_accumulate_grad_hook."""
    return bool(POST_ACCUMULATE_GRAD_HOOK.expected())
