"""What one rank runs under torch.distributed.pipelining: its stages of a split MLP, T schedule.step() calls, one optimizer step.

A schedule runs n equal micro-batches of m rows through S stages and adds their gradients into
every stage's .grad: with a loss ℓ_j per micro-batch, T outer step() calls without zero_grad leave
Σ_t s·Σ_j ∇ℓ_tj, s = 1/n with scale_grads=True (torch divides each step's .grad by n), else 1.
Each stage holds the layers [b_s, b_{s+1}) of the full model under their full-model names, so its
parameters are compared with the same-named slice of the one-process full-batch gradient.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np
import torch
from hypothesis.errors import InvalidArgument

from properties.case import Case, dtype_name
from properties.models import ACTIVATIONS, ModelSpec
from properties.versions import GPIPE_FEWER_MICRO_BATCHES_THAN_STAGES, INSTALLED, parse_version

NumpyGrads = dict[str, "np.ndarray | None"]
MINIMUM = "2.10.0"
"""The first torch the pipeline family runs on (measured in each version's environment of the matrix): 2.6.0 made
torch.distributed.pipelining public, but its schedules take no scale_grads (pytorch#144352, 2.7); on 2.6.0, 2.7.1 and
2.8.0 a LoopedBFS or interleaved schedule with 2 stages per rank blocks every rank on gloo (LoopedBFS of 1 micro-batch
over 3 ranks, Interleaved1F1B of 2); 2.8.0's ScheduleInterleavedZeroBubble leaves garbage in .grad and 2.9.1 aborts every
schedule's first step (both registered in properties.defects, tests/test_pipeline_gloo.py runs them from PROBE_MINIMUM)."""
PROBE_MINIMUM = "2.8.0"
"""The first torch tests/test_pipeline_gloo.py's fixed pipelines run on: where the registered pre-family defects show."""
LOSSES = {
    "mean": "each micro-batch's mean squared error (what scale_grads=True expects)",
    "sum": "each micro-batch's summed squared error (what scale_grads=False expects)",
    "mean/(n·T)": "each micro-batch's mean squared error ÷ (n·T): T outer steps accumulated the right way",
}
OPTIMIZERS = ("SGD", "Adam")


@dataclass(frozen=True)
class Placement:
    """How a schedule places its stages: per rank 1 or 2, in a loop (stage s on rank s mod W) or a V (r and 2W − 1 − r)."""

    stages_per_rank: tuple[int, ...]
    shape: str
    split_backward: bool = False
    constraint: str = ""

    def admits(self, n: int, world_size: int, stages_per_rank: int) -> bool:
        """Whether the schedule's constructor accepts n micro-batches on this many ranks and stages (its own documented checks)."""
        if self.constraint == "rounds":  # Interleaved*: n a multiple of max(1, n // W)
            return n % max(1, n // world_size) == 0
        if self.constraint == "n ≥ stages":  # 1F1B, DualPipeV
            return n >= world_size * stages_per_rank
        return True


PLACEMENTS = {
    "ScheduleGPipe": Placement((1,), "loop", constraint="" if GPIPE_FEWER_MICRO_BATCHES_THAN_STAGES.expected() else "n ≥ stages"),
    "Schedule1F1B": Placement((1,), "loop", constraint="n ≥ stages"),
    "ScheduleLoopedBFS": Placement((1, 2), "loop"),
    "ScheduleInterleaved1F1B": Placement((1, 2), "loop", constraint="rounds"),
    "ScheduleInterleavedZeroBubble": Placement((1, 2), "loop", split_backward=True, constraint="rounds"),
    "ScheduleZBVZeroBubble": Placement((2,), "v", split_backward=True),
    "ScheduleDualPipeV": Placement((2,), "v", split_backward=True, constraint="n ≥ stages"),
}
"""Every schedule the suite knows how to place; an exported schedule missing here fails test_every_exported_schedule_is_placed."""


def unavailable_reason() -> str | None:
    """Why the pipeline family cannot run here (runnable_reason, or a registered defect that stops every schedule), or None."""
    from properties import defects

    reason = runnable_reason()
    if reason is None and defects.PIPELINING_GLOO_FIRST_STEP_ABORTS.affects():
        return f"torch {torch.__version__}: " + defects.PIPELINING_GLOO_FIRST_STEP_ABORTS.reason()
    return reason


def runnable_reason(minimum: str = MINIMUM) -> str | None:
    """Why torch.distributed.pipelining cannot run here at all (no gloo, no pipelining package, before `minimum`), or None."""
    from properties.distributed import unavailable_reason as distributed_reason

    reason = distributed_reason()
    if reason is not None:
        return reason
    try:
        importlib.import_module("torch.distributed.pipelining")  # an `import torch.…` here would make torch local
    except Exception as error:  # noqa: BLE001 - any import failure means no pipelining here
        return f"torch {torch.__version__} has no torch.distributed.pipelining (the family runs from torch {minimum}): {error}"
    if INSTALLED < parse_version(minimum):
        return (
            f"torch {torch.__version__}: the pipeline family runs from torch {minimum} (properties.distributed.pipeline.MINIMUM "
            "says why)"
        )
    return None


def exported_schedules() -> tuple[str, ...]:
    """The schedule classes torch.distributed.pipelining exports (every name in __all__ that is a _PipelineSchedule)."""
    import torch.distributed.pipelining as pipelining
    from torch.distributed.pipelining.schedules import _PipelineSchedule

    names = getattr(pipelining, "__all__", dir(pipelining))
    found = []
    for name in names:
        value = getattr(pipelining, name, None)
        if isinstance(value, type) and issubclass(value, _PipelineSchedule):
            found.append(name)
    return tuple(sorted(found))


def known_schedules() -> tuple[str, ...]:
    """The exported schedules the suite can place: the ones the properties draw."""
    return tuple(name for name in exported_schedules() if name in PLACEMENTS)


def layer_names(spec: ModelSpec) -> tuple[str, ...]:
    """The full model's Linear layers in order: ('hidden', 'output') for an MLP, ('layers.0', …) for a DeepMLP."""
    if spec.kind == "mlp":
        return ("hidden", "output")
    if spec.kind == "deep":
        return tuple(f"layers.{i}" for i in range(spec.depth))
    raise ValueError(f"a pipeline splits an MLP or a DeepMLP, not {spec.kind!r}")


@dataclass(frozen=True)
class PipelineCase:
    """A model split at `bounds` into S stages over W ranks, T steps of n micro-batches of m rows each, then one optimizer step.

    Stage s holds layers bounds[s] … bounds[s+1] − 1; step t feeds rows t·n·m … (t+1)·n·m − 1 of
    the case's data; the loss is LOSSES[loss] per micro-batch; the schedule divides by n or not.
    """

    model: ModelSpec
    schedule: str
    world_size: int
    stages_per_rank: int
    bounds: tuple[int, ...]
    n_microbatches: int
    rows: int
    loss: str = "mean"
    scale_grads: bool = True
    steps: int = 1
    optimizer: str = "SGD"
    lr: float = 0.1
    seed: int = 0
    dtype: torch.dtype = torch.float64

    def __post_init__(self):
        if self.rows % self.n_microbatches:
            raise InvalidArgument(
                f"a batch of N={self.rows} rows cannot be cut into n_microbatches={self.n_microbatches} equal micro-batches: "
                "torch.distributed.pipelining's stages expect one shape for every micro-batch, so N must be a multiple of n"
            )
        if self.schedule not in PLACEMENTS:
            raise InvalidArgument(f"schedule={self.schedule!r}: the suite knows how to place {sorted(PLACEMENTS)}")
        placement = PLACEMENTS[self.schedule]
        if self.stages_per_rank not in placement.stages_per_rank:
            raise InvalidArgument(
                f"{self.schedule} places {placement.stages_per_rank} stages per rank, not {self.stages_per_rank}"
            )
        layers = len(layer_names(self.model))
        if len(self.bounds) != self.stages + 1 or self.bounds[0] != 0 or self.bounds[-1] != layers:
            raise InvalidArgument(f"bounds={self.bounds}: expected {self.stages + 1} cut points from 0 to {layers}")
        if any(a >= b for a, b in zip(self.bounds, self.bounds[1:])):
            raise InvalidArgument(f"bounds={self.bounds}: every stage needs at least one layer")
        if self.loss not in LOSSES:
            raise InvalidArgument(f"loss={self.loss!r}: expected one of {sorted(LOSSES)}")
        if self.optimizer not in OPTIMIZERS:
            raise InvalidArgument(f"optimizer={self.optimizer!r}: expected one of {OPTIMIZERS}")

    @property
    def stages(self) -> int:
        """S = W · stages per rank."""
        return self.world_size * self.stages_per_rank

    @property
    def placement(self) -> Placement:
        """The schedule's placement."""
        return PLACEMENTS[self.schedule]

    @property
    def micro_rows(self) -> int:
        """m = N / n, the rows of one micro-batch."""
        return self.rows // self.n_microbatches

    def rank_stages(self, rank: int) -> tuple[int, ...]:
        """The stage indices rank r holds: r, r + W, … in a loop; r and 2W − 1 − r in a V."""
        if self.placement.shape == "v":
            return (rank, 2 * self.world_size - 1 - rank)
        return tuple(rank + i * self.world_size for i in range(self.stages_per_rank))

    def stage_layers(self, stage: int) -> tuple[str, ...]:
        """The full-model layer names stage s holds."""
        return layer_names(self.model)[self.bounds[stage] : self.bounds[stage + 1]]

    def data(self) -> Case:
        """The case's T·N rows as a Case of T·n micro-batches of m rows (its model, dtype and seed)."""
        return Case(self.model, (self.micro_rows,) * (self.n_microbatches * self.steps), self.dtype, self.seed)

    def step_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The T global batches (x, y) of N rows each, in order."""
        x, y = self.data().full_batch()
        return [(x[t * self.rows : (t + 1) * self.rows], y[t * self.rows : (t + 1) * self.rows]) for t in range(self.steps)]

    def loss_value(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """ℓ_j for one micro-batch: LOSSES[loss]."""
        if self.loss == "sum":
            return torch.nn.functional.mse_loss(prediction, target, reduction="sum")
        mean = torch.nn.functional.mse_loss(prediction, target)
        return mean if self.loss == "mean" else mean / (self.n_microbatches * self.steps)

    @property
    def count(self) -> float:
        """c with .grad = ∇ (1/c)·Σ over all T·N rows of ‖ŷ − y‖²: (m·d_out for a mean loss)·(n·T for ÷(n·T))·(n with scale_grads)."""
        count = 1.0
        if self.loss != "sum":
            count *= self.micro_rows * self.model.out_features
        if self.loss == "mean/(n·T)":
            count *= self.n_microbatches * self.steps
        if self.scale_grads:
            count *= self.n_microbatches
        return count

    def __repr__(self) -> str:
        stages = "; ".join(f"{list(self.stage_layers(s))}" for s in range(self.stages))
        scale = "scale_grads" if self.scale_grads else "scale_grads=False"
        return (
            f"{self.schedule}, {self.model!r} in {self.stages} stages ({self.placement.shape}, {self.world_size} ranks): {stages}; "
            f"{dtype_name(self.dtype)}, {self.steps} step() of {self.n_microbatches} micro-batches × {self.micro_rows} rows, "
            f"{self.loss} loss, {scale}, then {self.optimizer}(lr={self.lr}), seed {self.seed}"
        )

    def _repr_pretty_(self, printer, cycle) -> None:
        """Hypothesis prints a falsifying PipelineCase as its one-line description."""
        printer.text(repr(self))


class Stage(torch.nn.Module):
    """Layers a … b − 1 of the chain x → L₀ → σ → L₁ → … : σ before every layer but the model's first."""

    def __init__(self, layers: list[torch.nn.Module], first: bool, activation: str):
        super().__init__()
        self.layers = torch.nn.ModuleList(layers)
        self.first = first
        self.activation = activation

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x if i == 0 and self.first else ACTIVATIONS[self.activation](x))
        return x


def stage_module(case: PipelineCase, model: torch.nn.Module, stage: int) -> tuple[Stage, dict[str, str]]:
    """Stage s's module (sharing the full model's layers) and its parameter names → the full model's names."""
    modules = dict(model.named_modules())
    names = case.stage_layers(stage)
    module = Stage([modules[name] for name in names], case.bounds[stage] == 0, case.model.activation)
    mapping = {}
    for i, name in enumerate(names):
        for parameter_name, _ in modules[name].named_parameters():
            mapping[f"layers.{i}.{parameter_name}"] = f"{name}.{parameter_name}"
    return module, mapping


@dataclass(frozen=True)
class PipelineRecord:
    """One rank's run: .grad of its stages' parameters after the T steps, the losses its last stage returned, parameters after the step."""

    rank: int
    grads: NumpyGrads
    losses: tuple[tuple[float, ...], ...]
    params: dict[str, np.ndarray]

    def tensors(self, which: str) -> dict[str, torch.Tensor | None]:
        """`grads` or `params` as a map of torch tensors (None stays None)."""
        values = getattr(self, which)
        return {name: None if v is None else torch.from_numpy(v) for name, v in values.items()}


def build_schedule(case: PipelineCase, stages: list, loss_fn):
    """The schedule class case.schedule names, from torch.distributed.pipelining, over this rank's stages."""
    import torch.distributed.pipelining as pipelining

    schedule = getattr(pipelining, case.schedule)
    from torch.distributed.pipelining.schedules import PipelineScheduleSingle

    first = stages[0] if issubclass(schedule, PipelineScheduleSingle) else stages
    return schedule(first, n_microbatches=case.n_microbatches, loss_fn=loss_fn, scale_grads=case.scale_grads)


def run_pipeline(case: PipelineCase, rank: int, group) -> PipelineRecord:
    """Build rank r's stages, run T schedule.step() calls (no zero_grad between), record .grad and losses, one optimizer step."""
    return run_stages(case, rank, group, case.step_batches())


def plain(module: torch.nn.Module) -> torch.nn.Module:
    """A stage module as it is (no data-parallel wrapper)."""
    return module


def numpy_of(tensor: torch.Tensor | None) -> np.ndarray | None:
    """A local tensor's value as a NumPy array (None stays None)."""
    return None if tensor is None else tensor.detach().numpy().copy()


def run_stages(
    case: PipelineCase, rank: int, group, batches, *, wrap=plain, value=numpy_of, record_rank: int | None = None
) -> PipelineRecord:
    """Pipeline rank `rank` of `group`: its stages (each through `wrap`), one step() per (x, y) of `batches`, .grad, the step.

    `value` reads a parameter or gradient (a sharded one is gathered); the record carries `record_rank` (else `rank`).
    """
    from torch.distributed.pipelining import PipelineStage

    model = case.data().build_model()
    held = case.rank_stages(rank)
    modules, names, stages = [], {}, []
    for index in held:
        module, mapping = stage_module(case, model, index)
        modules.append(module)
        names.update({f"{index}:{local}": full for local, full in mapping.items()})
        stages.append(PipelineStage(wrap(module), index, case.stages, torch.device("cpu"), group=group))
    schedule = build_schedule(case, stages, case.loss_value)
    first, last = 0 in held, case.stages - 1 in held
    losses: list[tuple[float, ...]] = []
    for x, y in batches:
        step_losses: list[torch.Tensor] = []
        args = (x,) if first else ()
        kwargs = {"target": y, "losses": step_losses} if last else {}
        schedule.step(*args, **kwargs)
        losses.append(tuple(float(loss.detach()) for loss in step_losses))
    grads: NumpyGrads = {}
    parameters = []
    for index, module in zip(held, modules):
        for local, parameter in module.named_parameters():
            full = names[f"{index}:{local}"]
            grads[full] = value(parameter.grad)
            parameters.append((full, parameter))
    optimizer = (torch.optim.SGD if case.optimizer == "SGD" else torch.optim.Adam)([p for _, p in parameters], lr=case.lr)
    optimizer.step()
    params = {full: value(parameter) for full, parameter in parameters}
    return PipelineRecord(rank if record_rank is None else record_rank, grads, tuple(losses), params)
