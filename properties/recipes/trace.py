"""Run a recipe on one example, watching it: rows through the model, every optimizer step, leaks, scale, data."""

from __future__ import annotations

import traceback
import types
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from properties import grads as G
from properties.compare import dense
from properties.hermetic import GlobalState
from properties.recipes import batches
from properties.recipes.examples import RecipeCase
from properties.recipes.hyperparameters import make_scaler, make_scheduler
from properties.recipes.precision import PrecisionWatch, lower

SCHEDULER_ORDER_WARNING = r"Detected call of `lr_scheduler.step\(\)` before `optimizer.step\(\)`"


@dataclass(frozen=True)
class Step:
    """One optimizer.step(): rows through the model before it, and the parameters, .grad and lr just before it."""

    rows: int
    params: dict[str, torch.Tensor]
    grads: G.GradMap
    lrs: tuple[float, ...]


@dataclass(frozen=True)
class Leak:
    """After step `after_step` (or a scaler.update, or an epoch's end: `epoch` > 0 is the epoch it reached),
    a backward added onto a .grad that still held max |value| `magnitude`."""

    after_step: int
    name: str
    magnitude: float
    epoch: int = 0


@dataclass
class Run:
    """What one run of a recipe did."""

    steps: list[Step] = field(default_factory=list)
    leaks: list[Leak] = field(default_factory=list)
    final: dict[str, torch.Tensor] = field(default_factory=dict)
    scales: list[float] = field(default_factory=list)
    scheduler_steps: int | None = None
    rows: int = 0
    error: BaseException | None = None
    error_trace: str = ""
    data_change: str | None = None
    precision: torch.dtype | None = None

    @property
    def step_rows(self) -> list[int]:
        """Rows through the model before each step, in order."""
        return [step.rows for step in self.steps]


def loss_function() -> nn.Module:
    """The loss every recipe is handed by default: mean squared error, mean-reduced."""
    return nn.MSELoss()


def extras_for(example: RecipeCase, optimizer: torch.optim.Optimizer) -> dict:
    """The keyword arguments the example hands the recipe: max_norm, a scheduler, a GradScaler (only those switched on)."""
    extras = {}
    if example.clip_norm is not None:
        extras["max_norm"] = example.clip_norm
    if example.scheduler:
        extras["scheduler"] = make_scheduler(optimizer)
    if example.scaler:
        extras["scaler"] = make_scaler()
    return extras


def describe_data_change(given, before: list, copies: list) -> str | None:
    """How the micro-batches differ from what the recipe was given: list emptied or changed, a tensor replaced or modified."""
    if not isinstance(given, list) or len(given) != len(before):
        now = f"{len(given)}" if isinstance(given, list) else f"a {type(given).__name__}"
        return f"the micro_batches list was changed: it held {len(before)} micro-batch(es), now {now}"
    for j, (now, item, (x0, y0)) in enumerate(zip(given, before, copies), start=1):
        if now is not item:
            return f"micro-batch {j} in the list was replaced by another object"
        given_now, copied = [*batches.named(item[0], "x"), ("y", item[1])], [*batches.named(x0, "x"), ("y", y0)]
        for (what, tensor), (_, original) in zip(given_now, copied):
            if tensor.shape != original.shape or tensor.dtype != original.dtype:
                was, now = f"{tuple(original.shape)} {original.dtype}", f"{tuple(tensor.shape)} {tensor.dtype}"
                return f"micro-batch {j}'s {what} was changed in place: {was} → {now}"
            if not torch.equal(tensor, original):
                change = (tensor.double() - original.double()).abs().nan_to_num(float("inf")).max()
                return f"micro-batch {j}'s {what} was modified in place (largest change {float(change):.3g})"
    return None


def data_rows(args, kwargs) -> int | None:
    """Rows of the first data tensor (one autograd does not track) with a first dimension among a call's positional,
    then keyword, arguments: a module fed the recipe's inputs, not another module's activations."""
    for value in [*args, *kwargs.values()]:
        if isinstance(value, torch.Tensor) and value.dim() and not value.requires_grad:
            return value.shape[0]
    return None


def step_hooks_run(optimizer: torch.optim.Optimizer) -> bool:
    """Whether optimizer.step() runs the optimizer's step hooks: its class's step is torch's hook-running wrapper.

    Not so before torch 2.0 (no step hooks), nor on torch 2.0–2.2 once torch.compile has been used in the process:
    dynamo's first compile unwraps every torch.optim class's step and marks it hooked, so registered step hooks are
    silently never called (properties.versions.COMPILE_KEEPS_OPTIMIZER_STEP_HOOKS)."""
    wrap = getattr(torch.optim.Optimizer, "profile_hook_step", None)
    if wrap is None or not hasattr(optimizer, "register_step_pre_hook"):
        return False
    return getattr(type(optimizer).step, "__code__", None) is getattr(wrap(lambda: None), "__code__", False)


class Watch:
    """The hooks on the model, optimizer and scaler that fill a Run while the recipe runs."""

    def __init__(self, run: Run, model: nn.Module, optimizer: torch.optim.Optimizer, scaler, precision: PrecisionWatch):
        self.run, self.model, self.optimizer, self.precision = run, model, optimizer, precision
        self.named = G.trainable(model)
        self.pending: set[str] = set()
        self.epoch = 0
        self.depth = 0
        self.handles = self.count_rows(model)
        self.handles += [p.register_hook(self.backward_hook(name, p)) for name, p in self.named]
        if step_hooks_run(optimizer):
            self.handles.append(optimizer.register_step_pre_hook(lambda *_: self.before_step()))
            self.handles.append(optimizer.register_step_post_hook(lambda *_: self.boundary()))
        else:
            self.wrap_step()
        if scaler is not None:
            self.wrap_update(scaler)

    def count_rows(self, model: nn.Module) -> list:
        """Hooks that count the rows of each outermost call of the model or any submodule fed data (positional or keyword):
        `model.transformer(input_ids=x)` counts x's rows, `model.lm_head(hidden)` after it none."""
        for leave in ({"always_call": True}, {}):  # torch 2.0: forward hooks take with_kwargs but not always_call
            handles: list = []
            try:
                for module in model.modules():
                    handles.append(module.register_forward_pre_hook(self.enter, with_kwargs=True))
                    handles.append(module.register_forward_hook(self.leave, **leave))
                return handles
            except TypeError:  # a hook half registered would count rows twice, or leave the depth above 0 for good
                for handle in handles:
                    handle.remove()
        # torch < 2.0: positional inputs of the top-level model only
        return [
            model.register_forward_pre_hook(lambda module, args: self.enter(module, args, {})),
            model.register_forward_hook(self.leave),
        ]

    def enter(self, module, args, kwargs):
        if self.depth == 0 and torch.is_grad_enabled():
            self.run.rows += data_rows(args, kwargs) or 0
        self.depth += 1

    def leave(self, module, args, output):
        self.depth -= 1

    def before_step(self):
        self.run.steps.append(
            Step(
                rows=self.run.rows,
                params={name: p.detach().clone() for name, p in self.model.named_parameters()},
                grads=G.grads(self.model),
                lrs=tuple(group["lr"] for group in self.optimizer.param_groups),
            )
        )

    def boundary(self):
        """A window ended (a step or a scaler.update): the next backward must start from zero."""
        self.pending = {name for name, _ in self.named}
        self.epoch = 0

    def next_epoch(self, epoch: int, rows: int):
        """Epoch `epoch` (2, 3, …) begins at row `rows` of the run (whatever rows the last epoch ran through the model,
        a dropped window's included or not); its first backward must start from zero, whatever the last epoch left in .grad."""
        self.boundary()
        self.epoch = epoch
        self.run.rows = rows

    def backward_hook(self, name: str, parameter: torch.Tensor) -> Callable:
        def hook(grad):
            if name in self.pending:
                self.pending.discard(name)
                held = parameter.grad
                if held is not None:
                    magnitude = float(dense(held).abs().max()) if held.numel() else 0.0
                    if magnitude != 0.0:
                        self.run.leaks.append(Leak(len(self.run.steps), name, magnitude, self.epoch))
            return None

        return hook

    def wrap_step(self):
        bound = self.optimizer.step  # torch < 2.0: an LR scheduler made it a plain function, with no __func__
        original = getattr(bound, "__func__", lambda optimizer, *args, **kwargs: bound(*args, **kwargs))

        def step(optimizer, *args, **kwargs):
            self.before_step()
            result = original(optimizer, *args, **kwargs)
            self.boundary()
            return result

        self.optimizer.step = types.MethodType(step, self.optimizer)

    def wrap_update(self, scaler):
        original, scale = scaler.update, scaler.scale

        def update(*args, **kwargs):
            result = original(*args, **kwargs)
            self.run.scales.append(float(scaler.get_scale()))
            self.boundary()
            return result

        def exact_scale(*args, **kwargs):
            with self.precision.paused():  # a power of two, in float32 whatever the loss's dtype: exact
                return scale(*args, **kwargs)

        scaler.update, scaler.scale = update, exact_scale

    def close(self):
        for handle in self.handles:
            handle.remove()


def observe(recipe: Callable, example: RecipeCase) -> Run:
    """Run `recipe` on a fresh model, optimizer and data built from `example`, once per epoch on the same model,
    optimizer, extras and micro-batch list; record what it did."""
    model = example.build_model()
    optimizer = example.optimizer.build(model.parameters())
    extras = extras_for(example, optimizer)
    micro_batches = example.call_micro_batches()
    before = list(micro_batches)
    copies = [(batches.clone(x), y.clone()) for x, y in micro_batches]
    run = Run()
    precision = PrecisionWatch()
    watch = Watch(run, model, optimizer, extras.get("scaler"), precision)
    state = GlobalState.capture()
    try:
        with warnings.catch_warnings(), precision.watching():
            warnings.filterwarnings("ignore", message=SCHEDULER_ORDER_WARNING)
            for epoch in range(example.calls):
                if epoch:
                    watch.next_epoch(epoch + 1, example.boundaries[epoch * example.epoch_length])
                recipe(model, optimizer, micro_batches, example.handed_loss, example.k, **extras)
    except Exception as error:  # the recipe's own failure is a finding, reported with its input
        run.error = error
        run.error_trace = "".join(traceback.format_exception(type(error), error, error.__traceback__.tb_next)[-8:])
    finally:
        watch.close()
        if state.differences(GlobalState.capture()):
            state.restore()
    run.final = {name: p.detach().clone() for name, p in model.named_parameters()}
    run.precision = lower(precision.lowest, example.case.dtype)
    run.data_change = describe_data_change(micro_batches, before, copies)
    if "scheduler" in extras:
        run.scheduler_steps = extras["scheduler"].last_epoch
    return run
