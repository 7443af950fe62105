"""Partial and higher-order backward: backward(inputs=…), grad_tensors, retain_grad, hooks and create_graph accumulate as documented."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from hypothesis import strategies as st

from properties import bounds
from properties import grads as G
from properties import reference as R
from properties.case import Case
from properties.compare import EXACT, Tolerance, assert_grads_close, gamma, unit_roundoff
from properties.strategies import batch_splits, cases, model_specs, seeds

CASES = cases(models=model_specs(sparse=False), sizes=batch_splits(min_k=2, max_k=4))
LINEAR_CASES = cases(models=model_specs(["linear"]), sizes=batch_splits(max_k=1))
SUBSETS = seeds()
WEIGHTS = st.tuples(st.sampled_from([0.5, 2.0, -1.0, 3.0]), st.sampled_from([0.25, 1.5, -2.0]))


def listed(case: Case, subset: int) -> list[str]:
    """The trainable parameters whose bit is set in `subset` (at least one: the first when none is)."""
    names = [name for name in case.model.parameter_names() if name not in case.model.frozen]
    chosen = [name for i, name in enumerate(names) if subset >> i & 1]
    return chosen or names[:1]


def check_backward_inputs_accumulates_into_exactly_the_listed_leaves(case: Case, subset: int) -> None:
    """After one full backward, backward(inputs=listed) adds its gradient to the listed leaves' .grad; the others keep theirs, bitwise."""
    __tracebackhide__ = True
    model = case.build_model()
    (x1, y1), (x2, y2), *_ = case.micro_batches()
    G.mse(model, x1, y1).backward()
    first, objects = G.grads(model), {name: p.grad for name, p in model.named_parameters()}
    names = listed(case, subset)
    parameters = dict(model.named_parameters())
    second = G.fresh_gradients(model, G.mse(model, x2, y2))
    G.mse(model, x2, y2).backward(inputs=[parameters[name] for name in names])
    context = f"{case}; one backward, then backward(inputs={names}) on the second micro-batch"
    others = [name for name in parameters if name not in names]
    for name in others:
        if parameters[name].grad is not objects[name]:
            raise AssertionError(f".grad of {name!r}, not listed in inputs=, was replaced; case: {context}")
    assert_grads_close(
        {name: parameters[name].grad for name in others},
        {name: first[name] for name in others},
        tolerance=EXACT,
        context=context + ", expected the unlisted leaves untouched",
    )
    parts = [{name: first[name] for name in names}, {name: second[name] for name in names}]
    assert_grads_close(
        {name: parameters[name].grad for name in names},
        G.combine(parts),
        tolerance=bounds.sum_tolerances(case.dtype, parts),
        context=context + ", expected each listed leaf's .grad = first gradient + second",
    )


def check_grad_tensors_weight_each_output(case: Case, weights: tuple[float, float]) -> None:
    """torch.autograd.backward([L₁, L₂], grad_tensors=[w₁, w₂]): .grad = w₁·∇L₁ + w₂·∇L₂."""
    __tracebackhide__ = True
    model = case.build_model()
    (x1, y1), (x2, y2), *_ = case.micro_batches()
    losses = [G.mse(model, x1, y1), G.mse(model, x2, y2)]
    expected = G.combine(
        [G.fresh_gradients(model, w * loss, retain_graph=True) for w, loss in zip(weights, losses)],
    )
    torch.autograd.backward(losses, grad_tensors=[torch.tensor(w, dtype=case.dtype) for w in weights])
    parts = [
        bounds.mse_gradient_bound(case.model, model, x, y, count=y.numel(), dtype=case.dtype) for x, y in ((x1, y1), (x2, y2))
    ]
    bound = bounds.weighted_sum(parts, weights)
    assert_grads_close(
        G.grads(model),
        expected,
        tolerance=bound.tolerances(4),
        context=f"{case}; torch.autograd.backward of two micro-batch losses with grad_tensors={list(weights)}",
    )


def check_retain_grad_accumulates_like_a_leaf(case: Case) -> None:
    """A non-leaf output h with retain_grad(): backward of L₁(h) then of L₂(h) on one graph leaves h.grad = ∂L₁/∂h + ∂L₂/∂h."""
    __tracebackhide__ = True
    model = case.build_model()
    x, y = case.full_batch()

    def losses_of(h: torch.Tensor) -> list[torch.Tensor]:
        return [torch.nn.functional.mse_loss(h, y), (h * h).mean()]

    free = model(x)  # the parts come from a graph of their own: autograd.grad also fills a retained .grad
    parts = [torch.autograd.grad(loss, free, retain_graph=True)[0] for loss in losses_of(free)]
    h = model(x)
    h.retain_grad()
    first, second = losses_of(h)
    first.backward(retain_graph=True)
    second.backward()
    assert_grads_close(
        {"h": h.grad},
        {"h": parts[0] + parts[1]},
        tolerance=bounds.sum_tolerances(case.dtype, [{"h": p} for p in parts]),
        context=f"{case}; h = model(x) with retain_grad(), backward of the MSE then of mean(h²)",
        what="retained .grad",
    )


def check_a_hook_applies_to_each_contribution(case: Case) -> None:
    """A Tensor.register_hook that doubles the gradient runs once per backward, on that backward's gradient alone: .grad = Σⱼ 2·gⱼ."""
    __tracebackhide__ = True
    model = case.build_model()
    batches = case.micro_batches()
    name, parameter = next((n, p) for n, p in model.named_parameters() if p.requires_grad)
    seen: list[torch.Tensor] = []

    def double(grad: torch.Tensor) -> torch.Tensor:
        seen.append(grad.detach().clone())
        return 2 * grad

    fresh = [G.fresh_gradients(model, G.mse(model, x, y))[name] for x, y in batches]
    handle = parameter.register_hook(double)
    try:
        for x, y in batches:
            G.mse(model, x, y).backward()
    finally:
        handle.remove()
    context = f"{case}; a hook doubling {name!r}'s gradient, {len(batches)} backward calls"
    if len(seen) != len(batches):
        raise AssertionError(f"the hook ran {len(seen)} times for {len(batches)} backward calls; case: {context}")
    for j, ((x, y), got, want) in enumerate(zip(batches, seen, fresh), start=1):
        bound = bounds.mse_gradient_bound(case.model, model, x, y, count=y.numel(), dtype=case.dtype)
        assert_grads_close(
            {name: got},
            {name: want},
            tolerance={name: bound.tolerance(name, 2)},
            context=f"{context}: call {j} should see that call's gradient alone, not the accumulated .grad",
            what="the hook's input",
        )
    outputs = [{name: 2 * g} for g in seen]
    assert_grads_close(
        {name: parameter.grad},
        G.combine(outputs),
        tolerance=bounds.sum_tolerances(case.dtype, outputs),
        context=context + ", expected .grad = Σ of the hook's outputs",
    )


def second_order_closed_form(p: R.LinearParams, v: R.LinearParams, x, y) -> tuple[dict, dict]:
    """For y = Wx + b and L = (1/c)Σ‖ŷ − y‖²: g + H·v = (2/c)·Σᵢ (rᵢ + V·xᵢ + v_b)·xᵢᵀ and its bias sum; and its magnitudes."""
    x, y = R.array(x), R.array(y)
    residual = R.predictions(p, x) - y + x @ v.weight.T + (0.0 if v.bias is None else v.bias)
    size = R.residual_magnitudes(p, x, y) + np.abs(x) @ np.abs(v.weight).T + (0.0 if v.bias is None else np.abs(v.bias))
    scale = 2.0 / y.size
    value, magnitude = {"weight": scale * residual.T @ x}, {"weight": scale * size.T @ np.abs(x)}
    if p.bias is not None:
        value["bias"], magnitude["bias"] = scale * residual.sum(axis=0), scale * size.sum(axis=0)
    return value, magnitude


def check_create_graph_accumulates_the_second_order_term(case: Case) -> None:
    """backward(create_graph=True), then backward of φ = Σ⟨.grad, v⟩: .grad = g + H·v (Linear + MSE, closed form)."""
    __tracebackhide__ = True
    model = case.build_model()
    x, y = case.full_batch()
    v_model = case.model.build(dtype=case.dtype, device=case.device, seed=case.seed + 7)
    p, v = R.LinearParams.of(model), R.LinearParams.of(v_model)
    context = f"{case}; loss.backward(create_graph=True), then backward of Σ⟨θ.grad, v⟩"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the documented reference cycle of create_graph with .grad
            G.mse(model, x, y).backward(create_graph=True)
            phi = sum(
                (parameter.grad * dict(v_model.named_parameters())[name].detach()).sum()
                for name, parameter in model.named_parameters()
            )
            if not phi.requires_grad:
                raise AssertionError(f"the .grad left by backward(create_graph=True) carries no graph; case: {context}")
            phi.backward()
        actual = {name: parameter.grad.detach().clone() for name, parameter in model.named_parameters()}
    finally:
        for parameter in model.parameters():
            parameter.grad = None  # break the reference cycle
    expected, magnitudes = second_order_closed_form(p, v, x, y)
    n = 2 * case.model.in_features + case.rows + 12
    u = unit_roundoff(case.dtype)
    assert_grads_close(
        actual,
        R.as_tensors(expected),
        tolerance={
            name: Tolerance(
                0.0, 2 * gamma(n, u) * float(np.max(m)), f"2·γ_{n}·(2/c)·Σ(|W||x|+|b|+|y|+|V||x|+|v_b|)|x|, u={u:.3g}"
            )
            for name, m in magnitudes.items()
        },
        context=context + ", expected g + H·v = (2/c)·Σ(rᵢ + V·xᵢ + v_b)·xᵢᵀ",
    )
