"""Deliberately broken torch behaviours: each a `Mutant` that patches torch until the patch is undone.

The meta tests apply one per test through pytest's `monkeypatch` and check that the matching
property rejects it; the audit applies them one at a time to the whole suite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pytest


@dataclass(frozen=True)
class Mutant:
    """A named fault: `apply(monkeypatch)` installs it; undoing the monkeypatch removes it."""

    name: str
    description: str
    apply: Callable[[pytest.MonkeyPatch], None]

    def __repr__(self) -> str:
        return f"Mutant({self.name}: {self.description})"
