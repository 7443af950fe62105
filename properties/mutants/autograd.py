"""Broken autograd and zero_grad: backward that overwrites or drops, zero_grad that misses or leaves residue."""

from __future__ import annotations

import functools

import torch
from torch import nn

from properties.mutants import Mutant


def leaves_of(tensors) -> list[torch.Tensor]:
    """The leaf tensors (AccumulateGrad nodes) that a backward from `tensors` would write .grad into."""
    roots = [tensors] if isinstance(tensors, torch.Tensor) else list(tensors)
    stack = [t.grad_fn for t in roots if t.grad_fn is not None]
    seen, leaves = set(), []
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if hasattr(node, "variable"):
            leaves.append(node.variable)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return leaves


def _wrap_backward(monkeypatch, before_call) -> None:
    original = torch.autograd.backward

    @functools.wraps(original)
    def backward(tensors, *args, **kwargs):
        if before_call(leaves_of(tensors)):
            return original(tensors, *args, **kwargs)
        return None

    monkeypatch.setattr(torch.autograd, "backward", backward)


def _overwrite(leaves) -> bool:
    for leaf in leaves:
        leaf.grad = None
    return True


def _first_call_only(leaves) -> bool:
    return all(leaf.grad is None for leaf in leaves)


def _accumulating_autograd_grad(monkeypatch) -> None:
    original = torch.autograd.grad

    @functools.wraps(original)
    def grad(outputs, inputs, *args, **kwargs):
        result = original(outputs, inputs, *args, **kwargs)
        targets = [inputs] if isinstance(inputs, torch.Tensor) else list(inputs)
        for target, g in zip(targets, result):
            if g is not None and target.is_leaf:
                target.grad = g.detach().clone() if target.grad is None else target.grad + g
        return result

    monkeypatch.setattr(torch.autograd, "grad", grad)


def _zero(parameters, set_to_none: bool, how: str = "correct") -> None:
    """Reset .grad of `parameters`: correctly, or in one of the broken ways named by `how`."""
    for p in parameters:
        if p.grad is None:
            continue
        if set_to_none and how != "ignore_set_to_none":
            p.grad = None
        elif how == "replace":
            p.grad = torch.zeros_like(p.grad)
        elif how == "residue":
            p.grad.detach_().requires_grad_(False).mul_(1e-3)
        else:
            p.grad.detach_().requires_grad_(False).zero_()


def _patch_zero_grad(monkeypatch, *, how="correct", default=None, module_skip_last=False, optimizer_skip_last=False, first=None):
    """Replace Module.zero_grad and Optimizer.zero_grad with a version broken as described (`first`: reset only that many)."""
    module_default = True if default is None else default

    def module_zero_grad(self, set_to_none: bool = module_default):
        parameters = list(self.parameters())
        _zero((parameters[:-1] if module_skip_last else parameters)[:first], set_to_none, how)

    def optimizer_zero_grad(self, set_to_none: bool = module_default):
        groups = self.param_groups[:-1] if optimizer_skip_last else self.param_groups
        _zero([p for group in groups for p in group["params"]][:first], set_to_none, how)

    monkeypatch.setattr(nn.Module, "zero_grad", module_zero_grad)
    monkeypatch.setattr(torch.optim.Optimizer, "zero_grad", optimizer_zero_grad)


def _hook_fires_twice(monkeypatch) -> None:
    original = torch.Tensor.register_post_accumulate_grad_hook

    def register(self, hook):
        return original(self, lambda tensor: (hook(tensor), hook(tensor))[-1])

    monkeypatch.setattr(torch.Tensor, "register_post_accumulate_grad_hook", register)


def _freezing_ignored(monkeypatch) -> None:
    original = torch.Tensor.requires_grad_

    def requires_grad_(self, requires_grad=True):
        return self if not requires_grad and isinstance(self, nn.Parameter) else original(self, requires_grad)

    monkeypatch.setattr(torch.Tensor, "requires_grad_", requires_grad_)


def _linear_retains_grad(monkeypatch) -> None:
    original = nn.functional.linear

    def linear(*args, **kwargs):
        out = original(*args, **kwargs)
        if out.requires_grad:
            out.retain_grad()
        return out

    monkeypatch.setattr(nn.functional, "linear", linear)


BACKWARD_OVERWRITES = Mutant(
    "backward-overwrites-grad",
    "backward() replaces .grad instead of adding to it",
    lambda mp: _wrap_backward(mp, _overwrite),
)
BACKWARD_DROPS_LATER_CALLS = Mutant(
    "backward-drops-later-calls",
    "backward() does nothing once .grad exists",
    lambda mp: _wrap_backward(mp, _first_call_only),
)
AUTOGRAD_GRAD_ACCUMULATES = Mutant(
    "autograd-grad-accumulates", "torch.autograd.grad also adds its result into .grad", _accumulating_autograd_grad
)
ZERO_GRAD_SKIPS_LAST_PARAMETER = Mutant(
    "module-zero-grad-skips-last-parameter",
    "Module.zero_grad leaves the last parameter's .grad alone",
    lambda mp: _patch_zero_grad(mp, module_skip_last=True),
)
ZERO_GRAD_SKIPS_LAST_GROUP = Mutant(
    "optimizer-zero-grad-skips-last-group",
    "Optimizer.zero_grad leaves the last param group alone",
    lambda mp: _patch_zero_grad(mp, optimizer_skip_last=True),
)
ZERO_GRAD_IGNORES_SET_TO_NONE = Mutant(
    "zero-grad-ignores-set-to-none",
    "zero_grad(set_to_none=True) zeroes instead of setting None",
    lambda mp: _patch_zero_grad(mp, how="ignore_set_to_none"),
)
ZERO_GRAD_REPLACES_TENSOR = Mutant(
    "zero-grad-replaces-tensor",
    "zero_grad(set_to_none=False) assigns a new zeros tensor instead of zeroing in place",
    lambda mp: _patch_zero_grad(mp, how="replace"),
)
ZERO_GRAD_LEAVES_RESIDUE = Mutant(
    "zero-grad-leaves-residue",
    "zero_grad(set_to_none=False) scales .grad by 1e-3 instead of zeroing it",
    lambda mp: _patch_zero_grad(mp, how="residue"),
)
ZERO_GRAD_OLD_DEFAULT = Mutant(
    "zero-grad-1.x-default",
    "zero_grad() defaults to set_to_none=False, as before torch 2.0",
    lambda mp: _patch_zero_grad(mp, default=False),
)
HOOK_FIRES_TWICE = Mutant(
    "post-accumulate-hook-fires-twice", "post-accumulate-grad hooks run twice per backward", _hook_fires_twice
)
FREEZING_IGNORED = Mutant("requires-grad-false-ignored", "Parameter.requires_grad_(False) does nothing", _freezing_ignored)
NON_LEAF_RETAINS_GRAD = Mutant("non-leaf-retains-grad", "Linear outputs keep a .grad after backward", _linear_retains_grad)

MUTANTS = (
    BACKWARD_OVERWRITES,
    BACKWARD_DROPS_LATER_CALLS,
    AUTOGRAD_GRAD_ACCUMULATES,
    ZERO_GRAD_SKIPS_LAST_PARAMETER,
    ZERO_GRAD_SKIPS_LAST_GROUP,
    ZERO_GRAD_IGNORES_SET_TO_NONE,
    ZERO_GRAD_REPLACES_TENSOR,
    ZERO_GRAD_LEAVES_RESIDUE,
    ZERO_GRAD_OLD_DEFAULT,
    HOOK_FIRES_TWICE,
    FREEZING_IGNORED,
    NON_LEAF_RETAINS_GRAD,
)
