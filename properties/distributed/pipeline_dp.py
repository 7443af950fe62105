"""Pipeline × data parallel: P pipeline ranks × D replicas, DDP or FSDP2 on every stage, as torchtitan composes them.

The W = P·D ranks form torchtitan's ("pp", "dp") mesh: rank p·D + d is pipeline rank p of replica d.
Replica d feeds step t the rows (t·D + d)·N … (t·D + d + 1)·N − 1; the wrapper averages the replicas'
gradients over the "dp" group, so every stage's .grad = (1/D)·Σ_d (replica d's pipeline gradient)
= ∇(1/(c·D))·Σ over all T·D·N rows of ‖ŷ − y‖², c the pipeline's own count.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from hypothesis.errors import InvalidArgument

from properties.case import Case
from properties.distributed.pipeline import PipelineCase, PipelineRecord, numpy_of, run_stages

WRAPPERS = ("DDP", "FSDP2")
MESH_DIMS = ("pp", "dp")


@dataclass(frozen=True)
class ComposedCase:
    """`pipeline` (its world_size P pipeline ranks, its rows N per replica and step) on each of D replicas under `wrapper`."""

    pipeline: PipelineCase
    replicas: int = 2
    wrapper: str = "DDP"

    def __post_init__(self):
        if self.wrapper not in WRAPPERS:
            raise InvalidArgument(f"wrapper={self.wrapper!r}: expected one of {WRAPPERS}")
        if self.replicas < 2:
            raise InvalidArgument(f"replicas={self.replicas}: data parallelism needs at least 2 replicas")

    @property
    def world_size(self) -> int:
        """W = P·D ranks."""
        return self.pipeline.world_size * self.replicas

    def __getattr__(self, name):
        """The pipeline's own fields (model, dtype, schedule, n_microbatches, steps, scale_grads, loss, optimizer, lr, …)."""
        if name.startswith("__") or name == "pipeline":
            raise AttributeError(name)
        return getattr(self.pipeline, name)

    def coordinates(self, rank: int) -> tuple[int, int]:
        """(pipeline rank p, replica d) of global rank p·D + d."""
        return divmod(rank, self.replicas)

    def data(self) -> Case:
        """The T·D·N rows as a Case of T·D·n micro-batches of m rows (the pipeline's model, dtype and seed)."""
        p = self.pipeline
        return Case(p.model, (p.micro_rows,) * (p.n_microbatches * p.steps * self.replicas), p.dtype, p.seed)

    def replica_batches(self, replica: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Replica d's T batches (x, y): step t's rows (t·D + d)·N … (t·D + d + 1)·N − 1."""
        x, y = self.data().full_batch()
        n = self.pipeline.rows
        starts = [(t * self.replicas + replica) * n for t in range(self.pipeline.steps)]
        return [(x[s : s + n], y[s : s + n]) for s in starts]

    @property
    def count(self) -> float:
        """c·D: the replicas' average divides the pipeline's count c once more by D."""
        return self.pipeline.count * self.replicas

    def __repr__(self) -> str:
        return f"{self.wrapper} over {self.replicas} replicas (rank = p·{self.replicas} + d) of [{self.pipeline!r}]"

    def _repr_pretty_(self, printer, cycle) -> None:
        """Hypothesis prints a falsifying ComposedCase as its one-line description."""
        printer.text(repr(self))


_MESHES: dict[tuple[int, int, int], object] = {}


def mesh(case: ComposedCase, group):
    """The 2-D CPU mesh ("pp", "dp") of shape (P, D) over `group`, which must be the whole world (made once per shape)."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    if dist.get_world_size(group) != dist.get_world_size() or group is not dist.group.WORLD:
        raise ValueError(f"{case!r} needs a world of exactly {case.world_size} ranks, not a subgroup")
    key = (id(group), case.pipeline.world_size, case.replicas)
    if key not in _MESHES:
        _MESHES[key] = init_device_mesh("cpu", (case.pipeline.world_size, case.replicas), mesh_dim_names=MESH_DIMS)
    return _MESHES[key]


def gathered(tensor) -> object:
    """A (maybe sharded) tensor's full value as a NumPy array: a DTensor all-gathers over its mesh."""
    if tensor is not None and hasattr(tensor, "full_tensor"):
        tensor = tensor.full_tensor()
    return numpy_of(tensor)


def wrapper(case: ComposedCase, device_mesh):
    """The function that wraps one stage module: DDP over the "dp" group, or fully_shard per layer and on the stage."""
    if case.wrapper == "DDP":
        from torch.nn.parallel import DistributedDataParallel

        group = device_mesh.get_group("dp")
        return lambda module: DistributedDataParallel(module, process_group=group)
    from torch.distributed.fsdp import fully_shard

    dp_mesh = device_mesh["dp"]

    def shard(module):
        for layer in module.layers:
            fully_shard(layer, mesh=dp_mesh, reshard_after_forward=False)
        return fully_shard(module, mesh=dp_mesh, reshard_after_forward=False)

    return shard


def run_composed(case: ComposedCase, rank: int, group) -> PipelineRecord:
    """Global rank r = p·D + d: pipeline rank p of replica d, on the "pp" group, its stages wrapped over the "dp" group."""
    device_mesh = mesh(case, group)
    p, d = case.coordinates(rank)
    return run_stages(
        case.pipeline,
        p,
        device_mesh.get_group("pp"),
        case.replica_batches(d),
        wrap=wrapper(case, device_mesh),
        value=gathered,
        record_rank=rank,
    )
