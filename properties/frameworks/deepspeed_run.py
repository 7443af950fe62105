"""One DeepSpeed example on one rank: the engine built around the checker's model and SGD, the loop run, every step recorded.

Runs inside a DeepSpeed rank (deepspeed_ranks.py). The rank builds the example's model and
optimizer (same seed on every rank), a sequential DataLoader over its share of the dataset
(`DistributedSampler(shuffle=False)`: rank r of W takes rows r, r+W, …, so that global micro-batch
i is rows [iWB, (i+1)WB) of the dataset, interleaved), calls `deepspeed.initialize`, and hands the
engine and the loader to the loop. What the engine does is recorded the way DeepSpeed documents
for partitioned state: at each accumulation boundary, just before `engine.step()`, every
parameter's gradient by `deepspeed.utils.safe_get_full_grad` and the parameters inside
`deepspeed.zero.GatheredParameters`; a step counts only when the optimizer DeepSpeed drives really
stepped. The pipeline engine steps inside `train_batch()`: there, the record is taken in a step
pre-hook of that optimizer, each stage recording its own parameters.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Callable, Optional


@dataclass
class RankStep:
    """One optimizer step on one rank: the rows this rank ran through the model before it, parameters, gradients, lrs."""

    rows: int
    params: dict
    grads: dict
    lrs: tuple


@dataclass
class RankRecord:
    """What one rank saw: its steps, leaks (after step, name, magnitude), the rows it ran through the model, its final
    parameters, the loop's error if any."""

    steps: list = field(default_factory=list)
    leaks: list = field(default_factory=list)
    rows: int = 0
    final: dict = field(default_factory=dict)
    error: Optional[str] = None
    error_type: Optional[str] = None


@dataclass(frozen=True)
class Spec:
    """What a rank runs: the loop, the example, DeepSpeed's config, and 'engine' or 'pipeline' (2 stages)."""

    loop: Callable
    example: object
    config: dict
    kind: str = "engine"


def gathered(module) -> dict:
    """Every parameter of `module`, gathered where ZeRO-3 partitions them (deepspeed.zero.GatheredParameters), as copies.

    A ZeRO-3 parameter already AVAILABLE (whole on every rank: a persistent one, or one the engine holds gathered) is read
    as it is, not gathered again. DeepSpeed 0.18 and older re-partition on exit every parameter given to
    GatheredParameters and assert (free_param: `not param.ds_active_sub_modules`) when a module still holds one; their
    engine's root module still holds its parameters after backward (its post-backward release never fires when the input
    needs no gradient), so gathering them there raised AssertionError on 0.16.0 at every boundary and after the loop."""
    import deepspeed
    from deepspeed.runtime.zero.partition_parameters import ZeroParamStatus

    params = [p for p in module.parameters() if getattr(p, "ds_status", None) != ZeroParamStatus.AVAILABLE]
    with deepspeed.zero.GatheredParameters(params):
        return {name: p.detach().clone() for name, p in module.named_parameters()}


def full_grads(module) -> dict:
    """Each parameter's full gradient as DeepSpeed documents reading it (safe_get_full_grad); None where it has none."""
    from deepspeed.utils import safe_get_full_grad

    grads = {}
    for name, p in module.named_parameters():
        g = safe_get_full_grad(p)
        grads[name] = None if g is None else g.detach().clone()
    return grads


class EngineWatch:
    """Hooks on a DeepSpeed engine and the optimizer it drives that fill a RankRecord while the loop runs."""

    def __init__(self, engine, optimizer, record: RankRecord, pipeline: bool):
        self.engine, self.optimizer, self.record = engine, optimizer, record
        self.rows = 0
        self.stepped = 0
        self.snapshot: Optional[RankStep] = None
        self.after_step = True
        self.pipeline = pipeline
        self.handles = [engine.module.register_forward_pre_hook(self.count, with_kwargs=True)]
        self.handles.append(optimizer.register_step_post_hook(self.count_step))
        if pipeline:
            self.handles.append(optimizer.register_step_pre_hook(lambda *_: self.take_snapshot()))
        else:
            self.wrap(engine)

    def count(self, module, args, kwargs):
        """Rows of the data fed to the model (a tensor autograd does not track: not another stage's activations)."""
        import torch

        from properties.recipes.trace import data_rows

        if torch.is_grad_enabled():
            self.rows += data_rows(args, kwargs) or 0

    def count_step(self, *_):
        self.stepped += 1
        if self.pipeline:
            self.keep()

    def take_snapshot(self):
        lrs = tuple(group["lr"] for group in self.optimizer.param_groups)
        self.snapshot = RankStep(self.rows, gathered(self.engine.module), full_grads(self.engine.module), lrs)

    def wrap(self, engine):
        backward, step = engine.backward, engine.step

        def watched_backward(*args, **kwargs):
            if self.after_step:
                self.after_step = False
                self.check_leaks()
            return backward(*args, **kwargs)

        def watched_step(*args, **kwargs):
            if engine.is_gradient_accumulation_boundary():
                self.take_snapshot()
            before = self.stepped
            result = step(*args, **kwargs)
            if self.stepped > before:
                self.keep()
            return result

        engine.backward, engine.step = watched_backward, watched_step
        self.unwrap = lambda: (vars(engine).pop("backward", None), vars(engine).pop("step", None))

    def keep(self):
        """The optimizer stepped: keep the boundary's record (a step without one has no gradient to show)."""
        snapshot = self.snapshot or RankStep(self.rows, gathered(self.engine.module), {}, ())
        self.record.steps.append(snapshot)
        self.snapshot = None
        self.after_step = True

    def check_leaks(self):
        """Before a window's first backward: a parameter whose .grad still holds a value leaks into the window. Only .grad is
        read: between a step and the next backward DeepSpeed's partitioned gradient buffers are not defined to be read
        (safe_get_full_grad is for after backward() and before step()); what they carry shows in the next step's gradient."""
        for name, p in self.engine.module.named_parameters():
            g = p.grad
            if g is not None and g.numel():
                magnitude = float(g.detach().abs().max())
                if magnitude != 0.0:
                    self.record.leaks.append((len(self.record.steps), name, magnitude))

    def close(self):
        for handle in self.handles:
            handle.remove()
        if hasattr(self, "unwrap"):
            self.unwrap()


def dataset_of(example):
    """One epoch's rows (x, y) as a TensorDataset."""
    import torch
    from torch.utils.data import TensorDataset

    epoch = example.epoch.micro_batches()
    return TensorDataset(torch.cat([x for x, _ in epoch]), torch.cat([y for _, y in epoch]))


def pipeline_module(model, loss_fn):
    """The example's MLP, y = W₂·σ(W₁x + b₁) + b₂, as a PipelineModule of 2 stages: [W₁, σ] | [W₂] (uniform split)."""
    import torch
    from deepspeed.pipe import PipelineModule

    from properties.models import ACTIVATIONS

    class Activation(torch.nn.Module):
        def forward(self, h):
            return ACTIVATIONS[model.activation](h)

    return PipelineModule(
        layers=[model.hidden, Activation(), model.output], num_stages=2, loss_fn=loss_fn, partition_method="uniform"
    )


def renamed(tensors: dict, names: dict) -> dict:
    """Tensors keyed by the example model's parameter names (a PipelineModule names them by layer index)."""
    return {names.get(name, name): value for name, value in tensors.items()}


def train(rank: int, world_size: int, spec: Spec) -> RankRecord:
    """Build the engine on this rank, run the loop, return the record (the loop's or DeepSpeed's error included)."""
    import deepspeed
    import torch
    from torch.utils.data import DataLoader, DistributedSampler

    example = spec.example
    record = RankRecord()
    model = example.build_model()
    loss_fn = example.handed_loss
    data = dataset_of(example)
    original = {id(p): name for name, p in model.named_parameters()}
    if spec.kind == "pipeline":
        model = pipeline_module(model, loss_fn)
        replicas, replica = 1, 0
    else:
        replicas, replica = world_size, rank
    optimizer = example.optimizer.build(model.parameters())
    sampler = DistributedSampler(data, num_replicas=replicas, rank=replica, shuffle=False)
    loader = DataLoader(data, batch_size=example.micro_batch_size, sampler=sampler)
    engine = watch = None
    try:
        engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=dict(spec.config))
        watch = EngineWatch(engine, optimizer, record, spec.kind == "pipeline")
        spec.loop(engine, loader, loss_fn, example.epochs)
    except Exception as error:
        record.error_type = type(error).__name__
        record.error = "".join(traceback.format_exception(type(error), error, error.__traceback__)[-8:])
    finally:
        if watch is not None:
            record.rows = watch.rows
            watch.close()
    module = engine.module if engine is not None else model
    with torch.no_grad():
        record.final = gathered(module)
    if engine is not None:
        engine.destroy()
    names = {name: original[id(p)] for name, p in module.named_parameters() if id(p) in original}
    record.final = renamed(record.final, names)
    for step in record.steps:
        step.params, step.grads = renamed(step.params, names), renamed(step.grads, names)
    record.leaks = [(after, names.get(name, name), magnitude) for after, name, magnitude in record.leaks]
    return record
