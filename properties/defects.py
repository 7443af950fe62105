"""Known torch deviations from documented behaviour, keyed by version and configuration: the one place the suite lists them.

A property whose drawn configuration hits a registered deviation runs as a strict xfail with the
deviation's reason, so the version matrix shows which torch versions are affected and an upstream
fix turns into an XPASS (a failure under strict xfail) instead of passing unnoticed. A deviation
the suite finds that is not here fails the run like any other counterexample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from properties.versions import INSTALLED, Version, within


@dataclass(frozen=True)
class Deviation:
    """A known deviation: what goes wrong, in which configuration, for torch versions in [since, fixed), and where it is discussed."""

    name: str
    configuration: str
    behaviour: str
    since: str
    fixed: Optional[str]
    link: str

    def affects(self, version: Version = INSTALLED) -> bool:
        """Whether torch `version` has this deviation."""
        return within(version, self.since, self.fixed)

    def reason(self) -> str:
        """The xfail reason: what, where, and the link."""
        return f"known deviation '{self.name}' ({self.configuration}): {self.behaviour} — {self.link}"

    def xfail(self):
        """A strict xfail mark for the installed torch when it is affected, else no mark."""
        import pytest

        return pytest.mark.xfail(self.affects(), reason=self.reason(), strict=True)


COMPILED_ADAM_FLOAT32_STEP = Deviation(
    name="compiled Adam bias correction in float32",
    configuration="torch.compile(optimizer.step) for Adam/AdamW on float64 parameters",
    behaviour="the step count stays a float32 tensor under dynamo, so 1 − βᵗ and the update are only float32-accurate "
    "(a relative error near 1e-7 where eager Adam computes the bias correction in double precision)",
    since="2.0.0",
    fixed=None,
    link="https://github.com/pytorch/pytorch/pull/88173 (review thread on `step = step_t` in _single_tensor_adam)",
)

DEVIATIONS = (COMPILED_ADAM_FLOAT32_STEP,)
