"""Broken DDP, FSDP2 and pipelining: sync that stays on or never comes back, a reduction that sums, a bucket never
all-reduced, a pipeline stage that scales its gradients twice or never, drops the split backward's weight gradients, returns its
losses out of order, forgets the previous step()'s gradients or, wrapped in DDP, never all-reduces.

Rank processes are separate interpreters, so a patch in the test process does not reach them
by itself: each patch is marked with its mutant's name, `active()` reads the marks in this
process, and the rank pool forwards those names so every rank applies the same mutants for the
example (and undoes them after it). Applying a mutant here therefore breaks DDP in the ranks too.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import pytest

from properties.mutants import Mutant

MARK = "distributed_mutant"


def _targets() -> dict:
    """Where each mutant patches: DistributedDataParallel.no_sync and the allreduce communication hook."""
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
    from torch.nn.parallel import DistributedDataParallel

    return {
        "no_sync": (DistributedDataParallel, "no_sync"),
        "allreduce_hook": (default_hooks, "allreduce_hook"),
        "register_comm_hook": (DistributedDataParallel, "register_comm_hook"),
    }


def _fsdp_targets() -> dict:
    """Where the FSDP2 mutants patch: FSDPModule.set_requires_gradient_sync and FSDP2's gradient divide factors."""
    import importlib

    from torch.distributed.fsdp import FSDPModule

    collectives = importlib.import_module("torch.distributed.fsdp._fully_shard._fsdp_collectives")
    param_group = importlib.import_module("torch.distributed.fsdp._fully_shard._fsdp_param_group")
    return {
        "set_requires_gradient_sync": (FSDPModule, "set_requires_gradient_sync"),
        "divide_factors": (collectives, "_get_gradient_divide_factors"),
        "pre_backward": (param_group.FSDPParamGroup, "pre_backward"),
    }


def _pipeline_targets() -> dict:
    """Where the pipelining mutants patch: a stage's gradient scaling and weight backward, a schedule's loss hand-over."""
    from torch.distributed.pipelining.schedules import _PipelineSchedule
    from torch.distributed.pipelining.stage import _PipelineStageBase

    return {
        "stage_scale_grads": (_PipelineStageBase, "scale_grads"),
        "backward_weight_one_chunk": (_PipelineStageBase, "backward_weight_one_chunk"),
        "update_losses": (_PipelineSchedule, "_update_losses"),
        "clear_runtime_states": (_PipelineStageBase, "clear_runtime_states"),
        "backward_maybe_with_nosync": (_PipelineStageBase, "backward_maybe_with_nosync"),
    }


def _all_targets() -> dict:
    """DDP's targets, and FSDP2's and pipelining's where this torch has them (torch 2.6's stages have no scale_grads)."""
    targets = _targets()
    for extra in (_fsdp_targets, _pipeline_targets):
        try:
            targets.update(extra())
        except Exception:  # noqa: BLE001 - not in this torch (torch 1.13's fsdp package raises ValueError under Python 3.11)
            pass
    return targets


def _install(monkeypatch: pytest.MonkeyPatch, target: str, name: str, replacement) -> None:
    owner, attribute = _all_targets()[target]
    setattr(replacement, MARK, name)
    monkeypatch.setattr(owner, attribute, replacement)


def _null_no_sync(self):
    return nullcontext()


@contextmanager
def _no_sync_never_restores(self):
    self.require_backward_grad_sync = False
    yield


def _summing_allreduce_hook(process_group, bucket):
    import torch.distributed as dist

    group = process_group if process_group is not None else dist.group.WORLD
    work = dist.all_reduce(bucket.buffer(), group=group, async_op=True)
    return work.get_future().then(lambda future: future.value()[0])


def _skipping_first_bucket(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """register_comm_hook that registers a hook leaving bucket 0 as the rank's own sum: never all-reduced."""
    import torch
    from torch.nn.parallel import DistributedDataParallel

    original = DistributedDataParallel.register_comm_hook

    def register_comm_hook(self, state, hook):
        def skipping(state, bucket):
            if bucket.index() == 0:
                future = torch.futures.Future()
                future.set_result(bucket.buffer())
                return future
            return hook(state, bucket)

        return original(self, state, skipping)

    _install(monkeypatch, "register_comm_hook", name, register_comm_hook)


def _sync_flag_ignored(self, requires_gradient_sync: bool, *, recurse: bool = True) -> None:
    return None


def _fsdp_gradient_sync_never_returns(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """set_requires_gradient_sync(True) turns sync off like False: no unit ever reduces its gradients."""
    from torch.distributed.fsdp import FSDPModule

    original = FSDPModule.set_requires_gradient_sync

    def set_requires_gradient_sync(self, requires_gradient_sync: bool, *, recurse: bool = True) -> None:
        original(self, False, recurse=recurse)

    _install(monkeypatch, "set_requires_gradient_sync", name, set_requires_gradient_sync)


def _fsdp_summing(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """FSDP2's divide factors computed for a divisor of 1: the reduce-scatter sums the W ranks' gradients."""
    import importlib

    collectives = importlib.import_module("torch.distributed.fsdp._fully_shard._fsdp_collectives")
    original = collectives._get_gradient_divide_factors

    import inspect

    if "factor" in inspect.signature(original).parameters:  # torch 2.8 on: the divisor is an argument

        def divide_factors(reduce_scatter_group, all_reduce_group, reduce_dtype, device_type="", factor=None, *args, **kwargs):
            return original(reduce_scatter_group, all_reduce_group, reduce_dtype, device_type, 1.0, *args, **kwargs)

    else:  # torch 2.6–2.7: (pre-divide, post-divide) factors; 1.0 and 1.0 make the reduce-scatter a plain SUM

        def divide_factors(*args, **kwargs):
            return 1.0, 1.0

    _install(monkeypatch, "divide_factors", name, divide_factors)


def _fsdp_backward_gathers_own_shard(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """A unit resharded after forward gets back, for backward, only its own rows: the other ranks' rows are zeros."""
    import importlib

    import torch

    param_group = importlib.import_module("torch.distributed.fsdp._fully_shard._fsdp_param_group")
    original = param_group.FSDPParamGroup.pre_backward

    def pre_backward(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if not self._reshard_after_forward:
            return
        rank, size = self.mesh_info.shard_mesh_rank, self.mesh_info.shard_mesh_size
        with torch.no_grad():
            for fsdp_param in self.fsdp_params:
                data = fsdp_param.unsharded_param.data  # .data: the saved tensors' version counters stay as they are
                rows = -(-data.shape[0] // size)
                data[: rank * rows].zero_()
                data[(rank + 1) * rows :].zero_()

    _install(monkeypatch, "pre_backward", name, pre_backward)


def _stage_scales_twice(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """A stage divides its gradients by the factor twice: an already scaled gradient re-scaled (DeepSpeed#8154's shape)."""
    from torch.distributed.pipelining.stage import _PipelineStageBase

    original = _PipelineStageBase.scale_grads

    def scale_grads(self, grad_scale_factor: int) -> None:
        original(self, grad_scale_factor)
        original(self, grad_scale_factor)

    _install(monkeypatch, "stage_scale_grads", name, scale_grads)


def _stage_never_scales(self, grad_scale_factor: int) -> None:
    return None


def _weight_backward_dropped(self, *args, **kwargs) -> None:
    return None


def _losses_reversed(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """The schedule hands step(losses=[]) its micro-batch losses last first."""
    from torch.distributed.pipelining.schedules import _PipelineSchedule

    original = _PipelineSchedule._update_losses

    def update_losses(self, stages, losses):
        original(self, stages, losses)
        if losses is not None:
            losses.reverse()

    _install(monkeypatch, "update_losses", name, update_losses)


def _step_resets_grads(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Each step() starts its stages from .grad None: only the last outer step's gradient survives."""
    from torch.distributed.pipelining.stage import _PipelineStageBase

    original = _PipelineStageBase.clear_runtime_states

    def clear_runtime_states(self) -> None:
        original(self)
        self.submod.zero_grad(set_to_none=True)

    _install(monkeypatch, "clear_runtime_states", name, clear_runtime_states)


def _stage_never_syncs_ddp(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """A stage runs every backward as if it were not its last: a DDP-wrapped stage stays in no_sync() and never all-reduces."""
    from torch.distributed.pipelining.stage import _PipelineStageBase

    original = _PipelineStageBase.backward_maybe_with_nosync

    def backward_maybe_with_nosync(self, backward_type, bwd_kwargs, last_backward=False):
        return original(self, backward_type, bwd_kwargs, last_backward=False)

    _install(monkeypatch, "backward_maybe_with_nosync", name, backward_maybe_with_nosync)


NO_SYNC_DOES_NOTHING = Mutant(
    "ddp-no-sync-does-nothing",
    "DistributedDataParallel.no_sync() is a null context: every backward all-reduces",
    lambda mp: _install(mp, "no_sync", "ddp-no-sync-does-nothing", _null_no_sync),
)
NO_SYNC_NEVER_RESTORES = Mutant(
    "ddp-no-sync-never-restores",
    "leaving DistributedDataParallel.no_sync() does not re-enable gradient sync",
    lambda mp: _install(mp, "no_sync", "ddp-no-sync-never-restores", _no_sync_never_restores),
)
ALLREDUCE_SUMS = Mutant(
    "ddp-allreduce-sums",
    "DDP's allreduce communication hook sums gradients over ranks instead of averaging",
    lambda mp: _install(mp, "allreduce_hook", "ddp-allreduce-sums", _summing_allreduce_hook),
)

SKIPS_A_BUCKET = Mutant(
    "ddp-skips-a-bucket",
    "DDP never all-reduces its bucket 0: those parameters keep each rank's own accumulated gradient",
    lambda mp: _skipping_first_bucket(mp, "ddp-skips-a-bucket"),
)

FSDP_SYNC_FLAG_IGNORED = Mutant(
    "fsdp-sync-flag-ignored",
    "FSDPModule.set_requires_gradient_sync() does nothing: FSDP2 reduce-scatters after every backward of the window",
    lambda mp: _install(mp, "set_requires_gradient_sync", "fsdp-sync-flag-ignored", _sync_flag_ignored),
)
FSDP_NEVER_REDUCE_SCATTERS = Mutant(
    "fsdp-never-reduce-scatters",
    "FSDPModule.set_requires_gradient_sync(True) turns sync off: FSDP2 never reduce-scatters a gradient",
    lambda mp: _fsdp_gradient_sync_never_returns(mp, "fsdp-never-reduce-scatters"),
)
FSDP_REDUCE_SCATTER_SUMS = Mutant(
    "fsdp-reduce-scatter-sums",
    "FSDP2 divides the reduce-scattered gradients by 1 instead of W: it sums over ranks instead of averaging",
    lambda mp: _fsdp_summing(mp, "fsdp-reduce-scatter-sums"),
)
FSDP_BACKWARD_GATHERS_OWN_SHARD = Mutant(
    "fsdp-backward-gathers-own-shard",
    "FSDP2 re-gathers a unit resharded after forward with the other ranks' rows zeroed: backward sees a partial weight",
    lambda mp: _fsdp_backward_gathers_own_shard(mp, "fsdp-backward-gathers-own-shard"),
)

PIPELINE_SCALES_TWICE = Mutant(
    "pipeline-scales-twice",
    "a pipeline stage divides its accumulated gradients by n_microbatches twice",
    lambda mp: _stage_scales_twice(mp, "pipeline-scales-twice"),
)
PIPELINE_NEVER_SCALES = Mutant(
    "pipeline-never-scales",
    "a pipeline stage ignores scale_grads=True: its gradients stay the sum over the n micro-batches",
    lambda mp: _install(mp, "stage_scale_grads", "pipeline-never-scales", _stage_never_scales),
)
PIPELINE_DROPS_WEIGHT_BACKWARD = Mutant(
    "pipeline-drops-weight-backward",
    "a pipeline stage's weight backward (the W of a split backward) does nothing: zero-bubble schedules lose weight grads",
    lambda mp: _install(mp, "backward_weight_one_chunk", "pipeline-drops-weight-backward", _weight_backward_dropped),
)
PIPELINE_LOSSES_REVERSED = Mutant(
    "pipeline-losses-reversed",
    "a pipeline schedule returns the micro-batch losses of step(losses=[]) in reverse order",
    lambda mp: _losses_reversed(mp, "pipeline-losses-reversed"),
)
PIPELINE_STEP_RESETS_GRADS = Mutant(
    "pipeline-step-resets-grads",
    "every schedule.step() sets its stages' .grad to None first: outer steps do not accumulate",
    lambda mp: _step_resets_grads(mp, "pipeline-step-resets-grads"),
)
PIPELINE_DDP_NEVER_SYNCS = Mutant(
    "pipeline-ddp-never-syncs",
    "a DDP-wrapped pipeline stage treats its last backward like the others: the replicas' gradients are never all-reduced",
    lambda mp: _stage_never_syncs_ddp(mp, "pipeline-ddp-never-syncs"),
)

MUTANTS = (
    NO_SYNC_DOES_NOTHING,
    NO_SYNC_NEVER_RESTORES,
    ALLREDUCE_SUMS,
    SKIPS_A_BUCKET,
    FSDP_SYNC_FLAG_IGNORED,
    FSDP_NEVER_REDUCE_SCATTERS,
    FSDP_REDUCE_SCATTER_SUMS,
    FSDP_BACKWARD_GATHERS_OWN_SHARD,
    PIPELINE_SCALES_TWICE,
    PIPELINE_NEVER_SCALES,
    PIPELINE_DROPS_WEIGHT_BACKWARD,
    PIPELINE_LOSSES_REVERSED,
    PIPELINE_STEP_RESETS_GRADS,
    PIPELINE_DDP_NEVER_SYNCS,
)
BY_NAME = {mutant.name: mutant for mutant in MUTANTS}


def active() -> tuple[str, ...]:
    """Names of the mutants of this module installed in this process right now (empty without torch.distributed)."""
    try:
        targets = _all_targets()
    except (ImportError, RuntimeError):
        return ()
    marks = {getattr(getattr(owner, attribute, None), MARK, None) for owner, attribute in targets.values()}
    return tuple(sorted(name for name in marks if name is not None))


def apply_named(names, monkeypatch: pytest.MonkeyPatch) -> None:
    """Install the mutants called `names` (as forwarded by the rank pool) through `monkeypatch`."""
    unknown = sorted(set(names) - set(BY_NAME))
    if unknown:
        raise ValueError(f"unknown distributed mutants {unknown}; known: {sorted(BY_NAME)}")
    for name in names:
        BY_NAME[name].apply(monkeypatch)
