"""Broken corners of autograd: inputs= and grad_tensors ignored, retain_grad that overwrites, hooks applied twice,
checkpoint recomputation that forgets the RNG, create_graph dropped, vmap losing the last sample."""

from __future__ import annotations

import functools

import torch
import torch.utils.checkpoint

from properties.mutants import Mutant


def _wrap_backward(monkeypatch, change) -> None:
    original = torch.autograd.backward

    @functools.wraps(original)
    def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, grad_variables=None, inputs=None):
        grad_tensors, create_graph, inputs = change(grad_tensors, create_graph, inputs)
        return original(tensors, grad_tensors, retain_graph, create_graph, inputs=inputs)

    monkeypatch.setattr(torch.autograd, "backward", backward)


def _inputs_ignored(monkeypatch) -> None:
    _wrap_backward(monkeypatch, lambda grad_tensors, create_graph, inputs: (grad_tensors, create_graph, None))


def _grad_tensors_ignored(monkeypatch) -> None:
    _wrap_backward(monkeypatch, lambda grad_tensors, create_graph, inputs: (None, create_graph, inputs))


def _create_graph_dropped(monkeypatch) -> None:
    _wrap_backward(monkeypatch, lambda grad_tensors, create_graph, inputs: (grad_tensors, False, inputs))


def _retain_grad_overwrites(monkeypatch) -> None:
    def retain_grad(self):
        def keep(grad):
            self.grad = grad.detach().clone()  # the last contribution only

        if not self.is_leaf:
            self.register_hook(keep)

    monkeypatch.setattr(torch.Tensor, "retain_grad", retain_grad)


def _hook_applied_twice(monkeypatch) -> None:
    original = torch.Tensor.register_hook

    def register_hook(self, hook):
        return original(self, lambda grad: hook(hook(grad)))

    monkeypatch.setattr(torch.Tensor, "register_hook", register_hook)


def _checkpoint_forgets_rng(monkeypatch) -> None:
    original = torch.utils.checkpoint.checkpoint

    @functools.wraps(original)
    def checkpoint(function, *args, **kwargs):
        kwargs["preserve_rng_state"] = False
        return original(function, *args, **kwargs)

    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", checkpoint)
    import properties.invariants.checkpointing as module

    monkeypatch.setattr(module, "checkpoint", checkpoint)


def _vmap_loses_last_sample(monkeypatch) -> None:
    import torch.func

    original = torch.func.vmap

    def vmap(function, *args, **kwargs):
        mapped = original(function, *args, **kwargs)

        def run(*inputs):
            result = mapped(*inputs)
            return torch.utils._pytree.tree_map(lambda t: torch.cat([t[:-1], torch.zeros_like(t[-1:])]), result)

        return run

    monkeypatch.setattr(torch.func, "vmap", vmap)


BACKWARD_INPUTS_IGNORED = Mutant(
    "backward-inputs-ignored", "backward(inputs=…) accumulates into every leaf of the graph", _inputs_ignored
)
GRAD_TENSORS_IGNORED = Mutant(
    "grad-tensors-ignored", "torch.autograd.backward weights every output by 1, whatever grad_tensors says", _grad_tensors_ignored
)
CREATE_GRAPH_DROPPED = Mutant(
    "create-graph-dropped", "backward(create_graph=True) leaves a .grad without a graph", _create_graph_dropped
)
RETAIN_GRAD_OVERWRITES = Mutant(
    "retain-grad-overwrites", "a retained non-leaf .grad holds the last backward's gradient only", _retain_grad_overwrites
)
HOOK_APPLIED_TWICE = Mutant(
    "tensor-hook-applied-twice", "a Tensor.register_hook hook runs twice on each gradient", _hook_applied_twice
)
CHECKPOINT_FORGETS_RNG = Mutant(
    "checkpoint-forgets-rng", "checkpoint recomputes with a fresh RNG state (dropout draws a new mask)", _checkpoint_forgets_rng
)
VMAP_LOSES_LAST_SAMPLE = Mutant(
    "vmap-loses-last-sample", "torch.func.vmap returns zeros for the last sample", _vmap_loses_last_sample
)

MUTANTS = (
    BACKWARD_INPUTS_IGNORED,
    GRAD_TENSORS_IGNORED,
    CREATE_GRAPH_DROPPED,
    RETAIN_GRAD_OVERWRITES,
    HOOK_APPLIED_TWICE,
    CHECKPOINT_FORGETS_RNG,
    VMAP_LOSES_LAST_SAMPLE,
)


def _compiled_graph_drifts(monkeypatch) -> None:
    original = torch.compile

    @functools.wraps(original)
    def compile(model=None, **kwargs):
        if model is None:
            return lambda function: compile(function, **kwargs)
        compiled = original(model, **kwargs)

        def run(*args, **kw):
            out = compiled(*args, **kw)
            return out * (1 + 2.0**-20) if isinstance(out, torch.Tensor) else out

        return run

    monkeypatch.setattr(torch, "compile", compile)


COMPILED_GRAPH_DRIFTS = Mutant(
    "compiled-graph-drifts", "a compiled function's tensor output is off by a relative 2⁻²⁰", _compiled_graph_drifts
)
MUTANTS = (*MUTANTS, COMPILED_GRAPH_DRIFTS)
