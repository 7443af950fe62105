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


MATRIX_RUN = "python -m tools.matrix --all, reports/matrix.md"
"""The run that measured the boundaries below: every minor release's latest patch, one environment each."""


def observed(before: str, after: str) -> str:
    """The `measured` text of a boundary observed between two consecutive minor releases of the matrix."""
    return f"{before} shows the old behaviour, {after} the new ({MATRIX_RUN}: 'Behaviour that differs')"


@dataclass(frozen=True)
class Change:
    """A documented change: `before` up to (not including) version `since`, `after` from it on.

    `measured` names the releases observed on each side of `since` and the run that observed them
    (`python -m properties.observe` in each environment of `python -m tools.matrix --all`).
    """

    name: str
    since: str
    before: object
    after: object
    source: str
    measured: str = ""

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
    measured=observed("1.13.1", "2.0.1"),
)

POST_ACCUMULATE_GRAD_HOOK = Change(
    name="Tensor.register_post_accumulate_grad_hook exists",
    since="2.1.0",
    before=False,
    after=True,
    source="torch 2.1 release notes: new Tensor.register_post_accumulate_grad_hook",
    measured=observed("2.0.1", "2.1.2"),
)

OPTIMIZER_STEP_HOOKS = Change(
    name="Optimizer.register_step_pre_hook / register_step_post_hook exist",
    since="2.0.0",
    before=False,
    after=True,
    source="torch 2.0 release notes: optimizer step hooks (Optimizer.register_step_pre_hook, register_step_post_hook)",
    measured=observed("1.13.1", "2.0.1"),
)

CPU_GRAD_SCALER = Change(
    name="torch.amp.GradScaler runs on CPU",
    since="2.3.0",
    before=False,
    after=True,
    source="torch 2.3 release notes: device-generic torch.amp.GradScaler(device), CPU included",
    measured=observed("2.2.2", "2.3.1"),
)

TORCH_FUNC = Change(
    name="torch.func (grad, vmap, functional_call) exists",
    since="2.0.0",
    before=False,
    after=True,
    source="torch 2.0 release notes: functorch's transforms move into torch.func",
    measured=observed("1.13.1", "2.0.1"),
)

TORCH_COMPILE = Change(
    name="torch.compile exists",
    since="2.0.0",
    before=False,
    after=True,
    source="torch 2.0 release notes: torch.compile (TorchDynamo, AOTAutograd, inductor)",
    measured=observed("1.13.1", "2.0.1"),
)

COMPILE_KEEPS_OPTIMIZER_STEP_HOOKS = Change(
    name="optimizer step hooks still run after the first torch.compile",
    since="2.3.0",
    before=False,
    after=True,
    source="before torch 2.3, dynamo's TorchPatcher.patch (run by the first torch.compile in a process) replaced every "
    "torch.optim class's step with its unwrapped function and marked it hooked, so step hooks registered on any later "
    "optimizer of those classes are never called; https://github.com/pytorch/pytorch/pull/115772 (torch 2.3) removed "
    "that; measured here (a step post-hook after one torch.compile): 2.1.2 and 2.2.2 unhook, 2.3.1 and 2.13.0 do not; "
    "2.0.1's dynamo has the same code but cannot compile on Python 3.11",
    measured="2.2.2 (and 2.1.2) never call a step post-hook registered after one torch.compile, 2.3.1 (and 2.13.0) do: "
    "the hook counted in each environment of the matrix by hand; 2.0.1 cannot compile on Python 3.11, so 2.1 is the "
    "earliest observable",
)

FORWARD_HOOK_KEYWORDS = Change(
    name="Module.register_forward_pre_hook / register_forward_hook take with_kwargs",
    since="2.0.0",
    before=False,
    after=True,
    source="torch 2.0: forward hooks and pre-hooks may receive the call's keyword arguments (with_kwargs=True); "
    "signatures measured here: 1.13.1 lacks it, 2.0.1 has it",
    measured=observed("1.13.1", "2.0.1"),
)

FORWARD_HOOK_ALWAYS_CALL = Change(
    name="Module.register_forward_hook takes always_call",
    since="2.1.0",
    before=False,
    after=True,
    source="torch 2.1: register_forward_hook(always_call=True) runs the hook even when forward raises; signatures "
    "measured here: 2.0.1 lacks it, 2.1.2 has it",
    measured=observed("2.0.1", "2.1.2"),
)

GPIPE_FEWER_MICRO_BATCHES_THAN_STAGES = Change(
    name="ScheduleGPipe accepts fewer micro-batches than stages",
    since="2.11.0",
    before=False,
    after=True,
    source="torch.distributed.pipelining's PipelineScheduleSingle.__init__ raised ValueError('Number of microbatches (n) "
    "must be greater than or equal to the number of stages (S)') for ScheduleGPipe as for Schedule1F1B; from 2.11 only "
    "Schedule1F1B keeps the check",
    measured="2.9.1 and 2.10.0 raise the ValueError for ScheduleGPipe(n_microbatches=2) over 3 stages, 2.11.0 runs it "
    "(a 3-rank gloo pipeline in each version's environment of the matrix)",
)

CHANGES = (
    ZERO_GRAD_DEFAULT_SET_TO_NONE,
    POST_ACCUMULATE_GRAD_HOOK,
    OPTIMIZER_STEP_HOOKS,
    CPU_GRAD_SCALER,
    TORCH_FUNC,
    TORCH_COMPILE,
    COMPILE_KEEPS_OPTIMIZER_STEP_HOOKS,
    FORWARD_HOOK_KEYWORDS,
    FORWARD_HOOK_ALWAYS_CALL,
    GPIPE_FEWER_MICRO_BATCHES_THAN_STAGES,
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


def compile_unsupported() -> Optional[str]:
    """Why torch.compile cannot run under the installed torch and Python, or None where it can: torch before 2.0 has
    none, and torch 2.0 refuses Python 3.11 (`Python 3.11+ not yet supported for torch.compile`; dynamo runs on
    Python 3.11 from torch 2.1), as dynamo's own support check says."""
    import platform

    if not TORCH_COMPILE.expected():
        return f"torch {version_text(INSTALLED)}: {TORCH_COMPILE.name} only from torch {TORCH_COMPILE.since}"
    try:
        from torch._dynamo.eval_frame import check_if_dynamo_supported

        check_if_dynamo_supported()
    except ImportError:  # a torch that moved the check: torch.compiler says it
        supported = getattr(getattr(torch, "compiler", None), "is_dynamo_supported", lambda: True)
        if not supported():
            return f"torch {version_text(INSTALLED)} on Python {platform.python_version()}: torch.compile is not supported"
    except RuntimeError as error:
        return f"torch {version_text(INSTALLED)} on Python {platform.python_version()}: torch.compile refuses to run ({error})"
    if INSTALLED[:2] == COMPILE_SEGFAULTS[:2]:
        return (
            f"torch {version_text(INSTALLED)} on Python {platform.python_version()}: dynamo segfaulted a pytest worker while "
            "garbage-collecting inside trace_rules.lookup_inner (test_windows_through_a_compiled_model_take_the_full_batch_steps, "
            "aot_eager; the release-line matrix on 2.5.1, the only 2.5 release run; 2.4.1 and 2.6.0 do not)"
        )
    return None


COMPILE_SEGFAULTS = (2, 5, 1)
"""The release whose dynamo crashed the process in the matrix: the torch.compile properties are skipped on its minor line."""


def requires_compile():
    """A pytest skipif mark: skip, saying why, where torch.compile cannot run (compile_unsupported)."""
    import pytest

    reason = compile_unsupported()
    return pytest.mark.skipif(reason is not None, reason=reason or "torch.compile runs")
