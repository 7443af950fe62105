"""Known torch deviations from documented behaviour, keyed by version and configuration: the one place the suite lists them.

A property whose drawn configuration hits a registered deviation runs as a strict xfail with the
deviation's reason, so the version matrix shows which torch versions are affected and an upstream
fix turns into an XPASS (a failure under strict xfail) instead of passing unnoticed. A deviation
the suite finds that is not here fails the run like any other counterexample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from properties.versions import INSTALLED, Version, within

MATRIX_RUN = "python -m tools.matrix --all of 2026-12-06, reports/matrix.md ('Known deviations per version')"
"""The run that measured the boundaries below: every minor release's latest patch from 1.13.1 to 2.15.0."""


def matrix(outcome: str) -> str:
    """The `measured` text of a boundary the version matrix measured: which releases show the deviation, and the run."""
    return f"{outcome} ({MATRIX_RUN})"


@dataclass(frozen=True)
class Deviation:
    """A known deviation: what goes wrong, in which configuration, for torch versions in [since, fixed), and where it is discussed.

    `measured` names the releases run on each side of `since` and `fixed` and the run that ran them
    (the version matrix's strict xfails: reports/matrix.md, "Known deviations per version").
    """

    name: str
    configuration: str
    behaviour: str
    since: str
    fixed: Optional[str]
    link: str
    applies: Optional[Callable[[object], bool]] = None
    measured: str = ""

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

    def hit(self, configuration: object, version: Version = INSTALLED) -> bool:
        """Whether a drawn `configuration` is this deviation's and torch `version` has it."""
        return self.applies is not None and self.affects(version) and self.applies(configuration)


COMPILED_ADAM_FLOAT32_STEP = Deviation(
    name="compiled Adam bias correction in float32",
    configuration="torch.compile(optimizer.step) for Adam/AdamW on float64 parameters",
    behaviour="the step count stays a float32 tensor under dynamo, so 1 − βᵗ and the update are only float32-accurate "
    "(a relative error near 1e-7 where eager Adam computes the bias correction in double precision)",
    since="2.1.0",
    fixed=None,
    link="https://github.com/pytorch/pytorch/pull/88173 (review thread on `step = step_t` in _single_tensor_adam)",
    measured=matrix(
        "2.1.2 and every later release to 2.15.0 show it (2.5.1 not run: its dynamo segfaults, see versions.compile_unsupported); 2.0.1 cannot compile on Python 3.11 and 1.13.1 has no torch.compile: 2.1 is the earliest observable"
    ),
)


def _single_tensor_sgd_with_momentum(spec) -> bool:
    """An OptimizerSpec for SGD with momentum and the single-tensor implementation (foreach unset or False, as on CPU)."""
    return getattr(spec, "name", None) == "SGD" and spec["momentum"] != 0 and not spec.options.get("foreach")


COMPILED_SGD_MOMENTUM_STEP = Deviation(
    name="compiled SGD step with momentum",
    configuration="torch.compile(optimizer.step) for SGD(momentum≠0) with the single-tensor implementation "
    "(foreach unset on CPU, or False)",
    behaviour="dynamo raises InternalTorchDynamoError: list index out of range at `buf = momentum_buffer_list[i]` in "
    "_single_tensor_sgd, on the first compiled step (momentum 0, and foreach=True, compile and step right)",
    since="2.1.0",
    fixed="2.3.0",
    link="https://github.com/pytorch/pytorch/issues/116061 (aot_eager and eager backends alike on CPU)",
    applies=_single_tensor_sgd_with_momentum,
    measured=matrix(
        "2.1.2 and 2.2.2 show it, 2.3.1 and every later release do not (2.5.1 not run); 2.0.1 cannot compile on Python 3.11: 2.1 is the earliest observable"
    ),
)


def _static_graph_first_window_under_no_sync(case) -> bool:
    """A DistributedCase whose DDP has static_graph=True and whose first iteration runs backward inside no_sync()."""
    options = getattr(case, "options", None)
    return options is not None and options.static_graph and not options.warmup and case.k >= 2


DDP_STATIC_GRAPH_FIRST_NO_SYNC = Deviation(
    name="DDP static_graph with no_sync() in the first iteration",
    configuration="DistributedDataParallel(static_graph=True) whose first iteration accumulates under no_sync()",
    behaviour="every rank raises RuntimeError: expect_autograd_hooks_ INTERNAL ASSERT FAILED at reducer.cpp "
    "(after one synced iteration the same windows are right)",
    since="2.1.0",
    fixed=None,
    link="https://github.com/pytorch/pytorch/issues/143580 (again: https://github.com/huggingface/accelerate/issues/3679); "
    "a regression from pytorch#103487 (torch 2.1) per the open fix https://github.com/pytorch/pytorch/pull/187732",
    applies=_static_graph_first_window_under_no_sync,
    measured=matrix("1.13.1 and 2.0.1 do not show it, 2.1.2 and every later release to 2.15.0 do"),
)


def _static_graph_no_sync_after_a_synced_iteration(case) -> bool:
    """A DistributedCase whose DDP has static_graph=True and runs backward inside no_sync() after one synced iteration."""
    options = getattr(case, "options", None)
    return options is not None and options.static_graph and options.warmup and case.k >= 2


DDP_STATIC_GRAPH_NO_SYNC_AFTER_FIRST_ITERATION = Deviation(
    name="DDP static_graph with no_sync() after the first iteration",
    configuration="DistributedDataParallel(static_graph=True) that accumulates under no_sync() after one synced iteration",
    behaviour="every rank raises RuntimeError: expect_autograd_hooks_ INTERNAL ASSERT FAILED at reducer.cpp "
    "(the mirror image of pytorch#143580: there the first iteration crashes and later ones are right)",
    since="1.13.0",
    fixed="2.1.0",
    link="found by this suite's version matrix (CPU gloo); fixed in 2.1 with pytorch#103487, which re-keyed DDP's "
    "static-graph first-iteration check (https://github.com/pytorch/pytorch/pull/187732 describes it)",
    applies=_static_graph_no_sync_after_a_synced_iteration,
    measured=matrix(
        "1.13.1 (the oldest release on the index: earlier ones not measurable here) and 2.0.1 show it, 2.1.2 and every later release do not"
    ),
)


def _parameter_used_only_inside_no_sync(case) -> bool:
    """find_unused_parameters, and `extra` used in some micro-batch inside no_sync() but in no rank's synced one."""
    options = getattr(case, "options", None)
    if options is None or not options.find_unused_parameters or not options.extra_in or case.k < 2:
        return False
    synced = {rank * case.k + case.k - 1 for rank in range(case.ranks_with_data)}
    return not set(options.extra_in) & synced


DDP_FIND_UNUSED_NO_SYNC = Deviation(
    name="DDP find_unused_parameters forgets parameters used only inside no_sync()",
    configuration="DistributedDataParallel(find_unused_parameters=True) with a parameter used in micro-batches inside "
    "no_sync() and in none of the ranks' synced ones",
    behaviour="the synced backward treats the parameter as globally unused and never all-reduces it: each rank keeps "
    "its own accumulated gradient (W× the full-batch gradient on a rank that used it, none on the others)",
    since="1.13.0",
    fixed="2.4.0",
    link="https://github.com/pytorch/pytorch/issues/69031, fixed by https://github.com/pytorch/pytorch/pull/124193 "
    "(which dates the bug to pytorch#54981)",
    applies=_parameter_used_only_inside_no_sync,
    measured=matrix(
        "1.13.1 (the oldest release on the index; pytorch#124193 dates the bug to 1.9) to 2.3.1 show it, 2.4.1 and every later release do not"
    ),
)


def _static_graph_join_with_idle_rank(case) -> bool:
    """static_graph under join() with a rank without micro-batches, in the first iteration or with find_unused_parameters."""
    options = getattr(case, "options", None)
    return (
        options is not None
        and options.static_graph
        and options.join
        and case.ranks_with_data < case.world_size
        and (options.find_unused_parameters or not options.warmup)
    )


DDP_STATIC_GRAPH_JOIN_MISMATCH = Deviation(
    name="DDP static_graph under join() mismatches collectives",
    configuration="DistributedDataParallel(static_graph=True) in join() with a rank that has run out of inputs, "
    "in the first iteration or with find_unused_parameters=True",
    behaviour="the joined rank's shadow collectives do not match the others': gloo aborts the ranks (received data "
    "size doesn't match) or every rank blocks until the timeout (after one synced iteration and without "
    "find_unused_parameters the same windows are right)",
    since="1.13.0",
    fixed=None,
    link="found by this suite (torch 2.13.0 CPU gloo); no upstream report found",
    applies=_static_graph_join_with_idle_rank,
    measured=matrix("every release from 1.13.1 (the oldest on the index) to 2.15.0 shows it"),
)


def _scale_grads_across_outer_steps(case) -> bool:
    """A PipelineCase with scale_grads=True, n ≥ 2 micro-batches and T ≥ 2 step() calls before the optimizer step."""
    return (
        bool(getattr(case, "scale_grads", False)) and getattr(case, "steps", 1) >= 2 and getattr(case, "n_microbatches", 1) >= 2
    )


PIPELINE_SCALE_GRADS_ACROSS_STEPS = Deviation(
    name="pipelining scale_grads=True across several step() calls",
    configuration="a torch.distributed.pipelining schedule with scale_grads=True (the default), n ≥ 2 micro-batches and "
    "T ≥ 2 step() calls accumulated into .grad before the optimizer step",
    behaviour="every step() divides the whole accumulated .grad by n, not only its own micro-batches' share, so the "
    "sum g₁ + … + g_T becomes g₁/n^(T−1) + … + g_T (a decaying average): ‖.grad‖ ÷ ‖expected‖ measured 0.085–6.95 "
    "over 300 drawn examples (2–3 gloo ranks, n 2–8, T 2–4; above 1 where successive steps' gradients cancel); "
    "with scale_grads=False and the loss scaled by 1/(n·T) the sum is right",
    since="2.10.0",
    fixed=None,
    link="https://github.com/pytorch/torchtitan/issues/1733 (worked around in torchtitan by "
    "https://github.com/pytorch/torchtitan/pull/1732); scale_grads came with https://github.com/pytorch/pytorch/pull/144352 "
    "(January 2025, so torch 2.7); see also https://github.com/pytorch/torchtitan/issues/2972, "
    "https://github.com/pytorch/pytorch/pull/164777, https://github.com/pytorch/pytorch/pull/196641 (open) and "
    "https://github.com/deepspeedai/DeepSpeed/issues/8154; checked here: 2.13.0 affected",
    applies=_scale_grads_across_outer_steps,
    measured=matrix(
        "2.10.0 (the pipeline family's minimum: scale_grads came in 2.7, where schedules with 2 stages per rank block "
        "on gloo) and every later release to 2.15.0 show it; earlier releases not measurable"
    ),
)


def _ddp_stages_under_split_backward(case) -> bool:
    """A pipeline × data parallel case with DDP on its stages and a zero-bubble schedule (split input and weight backward)."""
    from properties.distributed.pipeline import PLACEMENTS

    return getattr(case, "wrapper", None) == "DDP" and PLACEMENTS[case.schedule].split_backward


PIPELINE_DDP_SPLIT_BACKWARD = Deviation(
    name="pipelining zero-bubble schedules with DDP stages",
    configuration="pipeline × data parallel with DistributedDataParallel on every stage and a schedule that splits the "
    "backward into input and weight gradients (ScheduleInterleavedZeroBubble, ScheduleZBVZeroBubble, ScheduleDualPipeV)",
    behaviour="the split weight backward calls torch.autograd.grad, which runs none of DDP's gradient hooks, so the "
    "gradients it computes are never all-reduced and a replica's .grad is not the replicas' average: ‖replica's .grad‖ ÷ "
    "‖expected‖ measured 0.10–3.71 over 30 drawn examples (2 pipeline ranks × 2 replicas, one step())",
    since="2.10.0",
    fixed=None,
    link="https://github.com/pytorch/pytorch/issues/144530 (open)",
    applies=_ddp_stages_under_split_backward,
    measured=matrix(
        "2.10.0 (the pipeline family's minimum: earlier releases not measurable) and every later release to 2.15.0 show it"
    ),
)


def _v_schedule(case) -> bool:
    """A pipeline case (or pipeline × data parallel case) whose schedule places its stages in a V (ZBV, DualPipeV)."""
    from properties.distributed.pipeline import PLACEMENTS

    placement = PLACEMENTS.get(getattr(case, "schedule", None))
    return placement is not None and placement.shape == "v"


PIPELINE_V_SCHEDULE_SELF_SEND = Deviation(
    name="pipelining V-shaped schedules send to their own rank on gloo",
    configuration="a torch.distributed.pipelining schedule that places two adjacent stages on the last rank (the V of "
    "ScheduleZBVZeroBubble and ScheduleDualPipeV) on a gloo process group",
    behaviour="the schedule's first step batches a warm-up send and receive between every stage and its neighbours, the "
    "last rank's two adjacent stages included, so that rank sends to itself: gloo raises 'Pair is not connected' (or "
    "aborts on 'Received data size doesn't match') and the other ranks block until the timeout",
    since="2.7.0",
    fixed="2.12.0",
    link="https://github.com/pytorch/pytorch/issues/128665 (V schedules keep adjacent stages on one rank; "
    "https://github.com/pytorch/pytorch/pull/138125 passes their activations without send/recv, but "
    "_PipelineSchedule._initialize_stages' _get_init_p2p_neighbors_ops did not skip them); 2.12 replaced that warm-up by a "
    "vote that skips same-rank stages (PipelineStage._warmup_forward_vote, _is_same_rank)",
    applies=_v_schedule,
    measured=matrix(
        "2.10.0 and 2.11.0 show it in the matrix (ScheduleZBVZeroBubble on 2 and 3 ranks, and ScheduleDualPipeV, "
        "exported from 2.9), 2.12.1 and every later release do not; 2.7.1, 2.8.0 and 2.9.1 (before the family's "
        "minimum: a 4-rank gloo pool in their environments) show it too; 2.6.0, the first with ScheduleZBVZeroBubble, not measured"
    ),
)


def _interleaved_zero_bubble(case) -> bool:
    """A pipeline case (or pipeline × data parallel case) on ScheduleInterleavedZeroBubble."""
    return getattr(case, "schedule", None) == "ScheduleInterleavedZeroBubble"


PIPELINE_INTERLEAVED_ZERO_BUBBLE_GARBAGE = Deviation(
    name="pipelining ScheduleInterleavedZeroBubble leaves garbage in .grad (torch 2.8)",
    configuration="ScheduleInterleavedZeroBubble (split input and weight backward, stages in a loop) on 4 gloo ranks",
    behaviour="the stages' .grad after one step() is not the accumulated gradient but values of uninitialised memory: "
    "5.6e+212, 7.5e-312 or O(1) numbers unrelated to the full-batch gradient (1.5e+10 to 3.7e+219 × the tolerance), "
    "silently, with no error",
    since="2.8.0",
    fixed="2.10.0",
    link="found by this suite's version matrix (CPU gloo); no upstream report found",
    applies=_interleaved_zero_bubble,
    measured=matrix(
        "2.8.0 shows it (4 and 8 stages on 4 ranks: tests/test_pipeline_gloo.py; 4 stages on 2 ranks pass), 2.10.0 and every later "
        "release do not; 2.9.1 aborts every schedule first (PIPELINING_GLOO_FIRST_STEP_ABORTS), so the fix lies in 2.9 or "
        "2.10; 2.7.1 not measurable (its interleaved schedules block on gloo)"
    ),
)


def _any_pipeline(case) -> bool:
    """Any pipeline case (or pipeline × data parallel case): the deviation stops every schedule."""
    return getattr(case, "schedule", None) is not None


PIPELINING_GLOO_FIRST_STEP_ABORTS = Deviation(
    name="pipelining on gloo aborts in the first step() (torch 2.9)",
    configuration="any torch.distributed.pipelining schedule on a gloo process group, from its first step()",
    behaviour="the ranks' first batched send/receive mismatch: gloo aborts them (op.preamble.length <= op.nbytes. 8 vs 4: "
    "Received data size doesn't match expected size), already for ScheduleGPipe over two stages on two ranks; the "
    "pipeline family is skipped with this reason where registered and one two-stage GPipe runs as its strict xfail",
    since="2.9.0",
    fixed="2.10.0",
    link="found by this suite's version matrix (CPU gloo; a plain two-rank ScheduleGPipe of one Linear aborts the same "
    "way); no upstream report found. Gloo's batch_isend_irecv has been fragile before: "
    "https://github.com/pytorch/PiPPy/issues/1130",
    applies=_any_pipeline,
    measured=matrix(
        "2.8.0 runs a two-stage ScheduleGPipe (tests/test_pipeline_gloo.py), 2.9.1 aborts it and every schedule's first "
        "step, 2.10.0 and every later release run them; a two-rank ScheduleGPipe outside the suite aborts on 2.9.1 alike"
    ),
)

DEVIATIONS = (
    COMPILED_ADAM_FLOAT32_STEP,
    COMPILED_SGD_MOMENTUM_STEP,
    DDP_STATIC_GRAPH_FIRST_NO_SYNC,
    DDP_STATIC_GRAPH_NO_SYNC_AFTER_FIRST_ITERATION,
    DDP_FIND_UNUSED_NO_SYNC,
    DDP_STATIC_GRAPH_JOIN_MISMATCH,
    PIPELINE_SCALE_GRADS_ACROSS_STEPS,
    PIPELINE_DDP_SPLIT_BACKWARD,
    PIPELINE_V_SCHEDULE_SELF_SEND,
    PIPELINING_GLOO_FIRST_STEP_ABORTS,
    PIPELINE_INTERLEAVED_ZERO_BUBBLE_GARBAGE,
)


def registered(configuration: object, version: Version = INSTALLED) -> tuple[Deviation, ...]:
    """The registered deviations a drawn configuration hits on torch `version` (a drawn property avoids them)."""
    return tuple(deviation for deviation in DEVIATIONS if deviation.hit(configuration, version))
