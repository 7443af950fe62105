"""Documented behaviour changes of torch, keyed by version: the one place the suite encodes them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Union

import torch

Version = tuple[int, int, int]


def parse_version(text: str) -> Version:
    """'2.13.0+cpu' → (2, 13, 0); pre-release and local suffixes are ignored ('2.0.0rc1' → (2, 0, 0))."""
    numbers = [int(part) for part in re.findall(r"\d+", text.split("+")[0])[:3]]
    return tuple(numbers + [0] * (3 - len(numbers)))  # type: ignore[return-value]


def version_text(version: Version) -> str:
    """(2, 13, 0) → '2.13.0'."""
    return ".".join(str(part) for part in version)


INSTALLED = parse_version(torch.__version__)


def within(version: Union[Version, str], since: str, fixed: Optional[str] = None) -> bool:
    """since ≤ version < fixed (no upper end when fixed is None): whether a registered deviation applies to `version`."""
    parsed = parse_version(version) if isinstance(version, str) else version
    return parsed >= parse_version(since) and (fixed is None or parsed < parse_version(fixed))


@dataclass(frozen=True)
class Change:
    """A documented change: `before` up to (not including) version `since`, `after` from it on."""

    name: str
    since: str
    before: object
    after: object
    source: str

    def expected(self, version: Union[Version, str, None] = None) -> object:
        """The documented value for the given torch version (the installed one when None)."""
        if version is None:
            version = INSTALLED
        elif isinstance(version, str):
            version = parse_version(version)
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

OPTIMIZER_STEP_HOOKS = Change(
    name="Optimizer.register_step_pre_hook / register_step_post_hook exist",
    since="2.0.0",
    before=False,
    after=True,
    source="torch 2.0 release notes: optimizer step hooks (Optimizer.register_step_pre_hook, register_step_post_hook)",
)

CPU_GRAD_SCALER = Change(
    name="torch.amp.GradScaler runs on CPU",
    since="2.3.0",
    before=False,
    after=True,
    source="torch 2.3 release notes: device-generic torch.amp.GradScaler(device), CPU included",
)

TORCH_FUNC = Change(
    name="torch.func (grad, vmap, functional_call) exists",
    since="2.0.0",
    before=False,
    after=True,
    source="torch 2.0 release notes: functorch's transforms move into torch.func",
)

TORCH_COMPILE = Change(
    name="torch.compile exists",
    since="2.0.0",
    before=False,
    after=True,
    source="torch 2.0 release notes: torch.compile (TorchDynamo, AOTAutograd, inductor)",
)

CHANGES = (
    ZERO_GRAD_DEFAULT_SET_TO_NONE,
    POST_ACCUMULATE_GRAD_HOOK,
    OPTIMIZER_STEP_HOOKS,
    CPU_GRAD_SCALER,
    TORCH_FUNC,
    TORCH_COMPILE,
)


def has_post_accumulate_grad_hook() -> bool:
    """Whether the installed torch documents Tensor.register_post_accumulate_grad_hook."""
    return bool(POST_ACCUMULATE_GRAD_HOOK.expected())


def requires(change: Change):
    """A pytest skipif mark: skip, naming both versions, where the installed torch predates `change`."""
    import pytest

    return pytest.mark.skipif(
        not change.expected(),
        reason=f"torch {version_text(INSTALLED)}: {change.name} only from torch {change.since}",
    )
