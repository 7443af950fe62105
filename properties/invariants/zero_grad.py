"""zero_grad() resets: to None, or to zeros in the same tensor, by Module and Optimizer, in every group."""

from __future__ import annotations

import torch
from hypothesis import strategies as st
from torch import nn

from properties import grads as G
from properties import versions
from properties.case import Case
from properties.compare import EXACT, assert_grads_close
from properties.strategies import cases, dtypes, model_specs

OWNERS = ("module", "optimizer")
CASES = cases(models=model_specs(frozen=st.booleans()), dtype=dtypes())
GROUPS = st.integers(1, 3)
RESETS = {"set_to_none=True": {"set_to_none": True}, "set_to_none=False": {"set_to_none": False}, "no argument": {}}


def grouped_optimizer(model: nn.Module, groups: int) -> torch.optim.Optimizer:
    """SGD whose trainable parameters are split, in order, into up to `groups` parameter groups."""
    params = [p for _, p in G.trainable(model)]
    count = max(1, min(groups, len(params)))
    chunks = [params[i::count] for i in range(count)]
    return torch.optim.SGD([{"params": chunk, "lr": 0.1 * (i + 1)} for i, chunk in enumerate(chunks)])


def accumulated(case: Case, groups: int):
    """The case's model after backward on every micro-batch, and an SGD over it with `groups` groups."""
    model = case.build_model()
    optimizer = grouped_optimizer(model, groups)
    for x, y in case.micro_batches():
        G.mse(model, x, y).backward()
    return model, optimizer


def reset(model: nn.Module, optimizer: torch.optim.Optimizer, owner: str, how: str) -> None:
    """Call `owner`.zero_grad with the keyword arguments named by `how`."""
    target = model if owner == "module" else optimizer
    target.zero_grad(**RESETS[how])


def describe(case: Case, owner: str, groups: int, how: str) -> str:
    """One line naming the example and the reset under test."""
    who = "Module.zero_grad" if owner == "module" else f"Optimizer.zero_grad ({groups} param groups)"
    return f"{case}; {who}({', '.join(f'{k}={v}' for k, v in RESETS[how].items())})"


def assert_grads_are_none(model: nn.Module, context: str) -> None:
    """Every parameter's .grad is None."""
    __tracebackhide__ = True
    left = {name: float(p.grad.abs().max()) for name, p in model.named_parameters() if p.grad is not None}
    if left:
        raise AssertionError(f".grad should be None but is a tensor for {sorted(left)} (max |value| {left}); {context}")


def assert_grads_zeroed_in_place(model: nn.Module, before: dict, context: str) -> None:
    """Every parameter that had a .grad still has that same tensor object, now all zeros and detached."""
    __tracebackhide__ = True
    for name, p in model.named_parameters():
        if before[name] is None:
            continue
        if p.grad is None:
            raise AssertionError(f".grad of {name!r} became None; expected zeros in the same tensor; {context}")
        if p.grad is not before[name]:
            raise AssertionError(f".grad of {name!r} is a new tensor; expected the same tensor zeroed in place; {context}")
        values = p.grad.to_dense() if p.grad.is_sparse else p.grad
        if bool(values.ne(0).any()) or p.grad.requires_grad:
            raise AssertionError(
                f".grad of {name!r} not reset: max |value| {float(values.abs().max()):.3g}, "
                f"requires_grad={p.grad.requires_grad}; {context}"
            )


def check_reset_to_none(case: Case, owner: str, groups: int) -> None:
    """zero_grad(set_to_none=True): every .grad is None afterwards."""
    __tracebackhide__ = True
    model, optimizer = accumulated(case, groups)
    reset(model, optimizer, owner, "set_to_none=True")
    assert_grads_are_none(model, describe(case, owner, groups, "set_to_none=True"))


def check_reset_to_zeros_in_place(case: Case, owner: str, groups: int) -> None:
    """zero_grad(set_to_none=False): every .grad is the same tensor object, filled with zeros."""
    __tracebackhide__ = True
    model, optimizer = accumulated(case, groups)
    before = {name: p.grad for name, p in model.named_parameters()}
    reset(model, optimizer, owner, "set_to_none=False")
    assert_grads_zeroed_in_place(model, before, describe(case, owner, groups, "set_to_none=False"))


def check_reset_default_is_documented(case: Case, owner: str, groups: int) -> None:
    """zero_grad() with no argument does what the installed torch documents (None from 2.0, zeros before)."""
    __tracebackhide__ = True
    change = versions.ZERO_GRAD_DEFAULT_SET_TO_NONE
    model, optimizer = accumulated(case, groups)
    before = {name: p.grad for name, p in model.named_parameters()}
    reset(model, optimizer, owner, "no argument")
    context = (
        f"{describe(case, owner, groups, 'no argument')}; torch {versions.version_text(versions.INSTALLED)} documents "
        f"set_to_none={change.expected()} ({change.source})"
    )
    if change.expected():
        assert_grads_are_none(model, context)
    else:
        assert_grads_zeroed_in_place(model, before, context)


def check_backward_after_reset_is_fresh(case: Case, owner: str, groups: int, how: str) -> None:
    """After accumulating, zero_grad, then one backward: .grad equals that backward's gradient alone, bitwise."""
    __tracebackhide__ = True
    model, optimizer = accumulated(case, groups)
    reset(model, optimizer, owner, how)
    x, y = case.micro_batches()[-1]
    fresh = G.fresh_gradients(model, G.mse(model, x, y))
    G.mse(model, x, y).backward()
    assert_grads_close(
        G.grads(model),
        fresh,
        tolerance=EXACT,
        context=f"{describe(case, owner, groups, how)}, then one backward: expected no residue of earlier gradients",
    )
