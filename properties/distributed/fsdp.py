"""What one rank runs under FSDP2: fully_shard per layer and on the root, k − 1 backward calls without gradient sync, one with.

FSDP2 (`torch.distributed.fsdp.fully_shard`) shards every parameter along dim 0 over the mesh.
Inside the window `set_requires_gradient_sync(False)` keeps each rank's unsharded gradient local;
the synced backward reduce-scatters each FSDP unit's gradients once and each rank keeps its shard
of their average over the W ranks (float64: ÷2 before the sum and ÷(W/2) after it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from properties.distributed.cases import DistributedCase

NumpyGrads = dict[str, "np.ndarray | None"]
# One FSDP unit's reduction in one backward call: its parameters and how many reduce-scatters it ran.
Reduction = tuple[tuple[str, ...], int]
MINIMUM = "2.7.0"
"""The first torch whose FSDP2 runs on CPU: 2.6.0 made fully_shard public, but its all-gather records an event on the
CPU stream, which has none (AttributeError: 'Stream' object has no attribute 'record_event'; measured in 2.6.0's
environment of the matrix)."""
# The private seam the collective count wraps: FSDPParamGroup.post_backward calls this module's foreach_reduce.
PARAM_GROUP_MODULE = "torch.distributed.fsdp._fully_shard._fsdp_param_group"


def unavailable_reason() -> str | None:
    """Why FSDP2 cannot run here (no gloo, no public fully_shard, no DeviceMesh.from_group, no foreach_reduce seam), or None."""
    import importlib

    from properties.distributed import unavailable_reason as distributed_reason

    reason = distributed_reason()
    if reason is not None:
        return reason
    try:
        from torch.distributed.device_mesh import DeviceMesh
        from torch.distributed.fsdp import fully_shard  # noqa: F401

        seam = importlib.import_module(PARAM_GROUP_MODULE)
    except Exception as error:  # noqa: BLE001 - torch 1.13's fsdp package raises ValueError on import under Python 3.11
        return f"torch {torch.__version__} has no torch.distributed.fsdp.fully_shard (FSDP2 on CPU from torch {MINIMUM}): {error}"
    from properties.versions import INSTALLED, parse_version

    if INSTALLED < parse_version(MINIMUM):
        return f"torch {torch.__version__}: FSDP2 runs on CPU from torch {MINIMUM} (properties.distributed.fsdp.MINIMUM says why)"
    if not hasattr(DeviceMesh, "from_group"):
        return f"torch {torch.__version__}: DeviceMesh.from_group is missing (a mesh over the pool's 2-rank subgroup needs it)"
    if not callable(getattr(seam, "foreach_reduce", None)):
        return f"torch {torch.__version__}: {PARAM_GROUP_MODULE}.foreach_reduce is missing (the reduce-scatter count wraps it)"
    return None


@dataclass(frozen=True)
class FSDPCase:
    """A DistributedCase's window run under FSDP2 on W ranks (weights W·m_rj/N, SGD(lr)), with reshard_after_forward on or off."""

    window: DistributedCase
    reshard_after_forward: bool = True

    def __post_init__(self):
        if self.window.options.wrapped or self.window.ranks_with_data != self.window.world_size:
            raise ValueError("FSDP2 windows take DDP's default options and micro-batches on every rank")

    @property
    def world_size(self) -> int:
        """W, the mesh's size."""
        return self.window.world_size

    @property
    def k(self) -> int:
        """Micro-batches per rank."""
        return self.window.k

    def __repr__(self) -> str:
        return f"FSDP2(reshard_after_forward={self.reshard_after_forward}) over {self.window!r}"

    def _repr_pretty_(self, printer, cycle) -> None:
        """Hypothesis prints a falsifying FSDPCase as its one-line description."""
        printer.text(repr(self))


def units(model: torch.nn.Module) -> list[tuple[torch.nn.Module, tuple[str, ...]]]:
    """The FSDP units: each module that owns parameters directly, with their names; the root last (maybe with none)."""
    found = []
    for prefix, module in model.named_modules():
        if module is model:
            continue
        owned = tuple(sorted(f"{prefix}.{name}" for name, _ in module.named_parameters(recurse=False)))
        if owned:
            found.append((module, owned))
    root = tuple(sorted(name for name, _ in model.named_parameters(recurse=False)))
    return [*found, (model, root)]


@dataclass(frozen=True)
class FSDPRecord:
    """One rank's window: the full (all-gathered) gradient after it, the full parameters after SGD, the reductions per backward call."""

    rank: int
    grads: NumpyGrads
    params: dict[str, np.ndarray]
    reductions: tuple[tuple[Reduction, ...], ...]

    def tensors(self, which: str) -> dict[str, torch.Tensor | None]:
        """`grads` or `params` as a map of torch tensors (None stays None)."""
        values = getattr(self, which)
        return {name: None if v is None else torch.from_numpy(v) for name, v in values.items()}


_MESHES: dict[int, object] = {}


def mesh(group):
    """A 1-D CPU DeviceMesh over `group` (the pool's world or its 2-rank subgroup), made once per group."""
    from torch.distributed.device_mesh import DeviceMesh

    if id(group) not in _MESHES:
        _MESHES[id(group)] = DeviceMesh.from_group(group, "cpu")
    return _MESHES[id(group)]


def full(tensor) -> np.ndarray | None:
    """A sharded DTensor's full value (an all-gather, the same on every rank) as a NumPy array."""
    if tensor is None:
        return None
    return tensor.full_tensor().detach().numpy().copy()


def counting_reductions(monkeypatch, log: list) -> None:
    """Wrap foreach_reduce (one FSDP unit's gradient reduction) to log its parameters and the reduce-scatters it runs.

    The reduce-scatters are counted at torch.distributed's own functions while foreach_reduce runs:
    reduce_scatter_single (through the ReduceScatter object torch 2.9 on passes in) or
    reduce_scatter_tensor (called directly before 2.9), whichever this torch's FSDP calls.
    """
    import importlib

    import torch.distributed as dist

    seam = importlib.import_module(PARAM_GROUP_MODULE)
    reduce = seam.foreach_reduce
    collectives = [name for name in ("reduce_scatter_single", "reduce_scatter_tensor") if hasattr(dist, name)]

    def foreach_reduce(fsdp_params, *args, **kwargs):
        calls = []
        originals = {name: getattr(dist, name) for name in collectives}

        def counted(name):
            def collective(*inner_args, **inner_kwargs):
                calls.append(name)
                return originals[name](*inner_args, **inner_kwargs)

            return collective

        names = tuple(sorted(p._param_fqn for p in fsdp_params))
        for name in collectives:
            setattr(dist, name, counted(name))
        try:
            return reduce(fsdp_params, *args, **kwargs)
        finally:
            for name, original in originals.items():
                setattr(dist, name, original)
            log.append((names, len(calls)))

    monkeypatch.setattr(seam, "foreach_reduce", foreach_reduce)


def run_fsdp_window(case: FSDPCase, rank: int, group) -> FSDPRecord:
    """fully_shard each unit, then k weighted backward calls (sync off for the first k − 1), full gradients, SGD, full parameters."""
    import pytest
    from torch.distributed.fsdp import fully_shard

    model = case.window.case.build_model()
    device_mesh = mesh(group)
    for module, _ in units(model):
        fully_shard(module, mesh=device_mesh, reshard_after_forward=case.reshard_after_forward)
    optimizer = torch.optim.SGD(model.parameters(), lr=case.window.lr)
    batches, weights = case.window.rank_batches(rank), case.window.weights(rank)
    reductions: list[tuple[Reduction, ...]] = []
    log: list[Reduction] = []
    with pytest.MonkeyPatch.context() as monkeypatch:
        counting_reductions(monkeypatch, log)
        for index, ((x, y), weight) in enumerate(zip(batches, weights)):
            model.set_requires_gradient_sync(index == len(batches) - 1)
            (weight * torch.nn.functional.mse_loss(model(x), y)).backward()
            reductions.append(tuple(log))
            log.clear()
    grads = {name: full(p.grad) for name, p in model.named_parameters()}
    optimizer.step()
    params = {name: full(p) for name, p in model.named_parameters()}
    return FSDPRecord(rank, grads, params, tuple(reductions))
