"""torch.func: per-sample gradients Σᵢ ∇ℓᵢ equal the batch gradient; func.grad summed in a buffer equals .grad accumulation."""

from __future__ import annotations

import torch
from hypothesis import strategies as st
from torch import nn

from properties import accumulate as A
from properties import bounds
from properties import grads as G
from properties.case import Case
from properties.compare import EXACT, assert_grads_close
from properties.strategies import cases, model_specs

CASES = cases(models=model_specs(sparse=False, frozen=st.booleans()))
REDUCTIONS = st.sampled_from(["sum", "mean"])


def trainable_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """name → detached parameter, for the parameters that require grad (the frozen ones stay the module's own)."""
    return {name: p.detach() for name, p in G.trainable(model)}


def per_sample_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """vmap(grad(ℓ)) over the rows: ∇ℓᵢ for ℓᵢ = Σₒ (model(xᵢ)ₒ − yᵢₒ)², stacked on a first dimension of N."""
    from torch.func import functional_call, grad, vmap

    def loss(params, xi, yi):
        prediction = functional_call(model, params, (xi.unsqueeze(0),))
        return nn.functional.mse_loss(prediction, yi.unsqueeze(0), reduction="sum")

    return vmap(grad(loss), in_dims=(None, 0, 0))(trainable_parameters(model), x, y)


def check_per_sample_gradients_sum_to_the_batch_gradient(case: Case, reduction: str = "sum") -> None:
    """Σᵢ ∇ℓᵢ from vmap(grad(ℓ)) = ∇ of the summed loss; divided by N·d_out, = ∇ of the mean loss."""
    __tracebackhide__ = True
    model = case.build_model()
    x, y = case.full_batch()
    count = 1 if reduction == "sum" else y.numel()
    per_sample = per_sample_gradients(model, x, y)
    summed = {name: per_sample[name].sum(0) / count if name in per_sample else None for name, _ in model.named_parameters()}
    expected = G.fresh_gradients(model, G.mse(model, x, y, reduction=reduction))
    bound = bounds.mse_gradient_bound(case.model, model, x, y, count=count, dtype=case.dtype)
    assert_grads_close(
        summed,
        expected,
        tolerance=bound.tolerances(extra_roundings=case.rows + 2),
        context=f"{case}; Σ of the {case.rows} per-sample gradients from vmap(grad(ℓ)){' / (N·d_out)' if count > 1 else ''} "
        f"vs one backward of the {reduction} loss",
    )


def check_func_grad_buffer_accumulates_like_grad(case: Case) -> None:
    """A buffer += torch.func.grad(mⱼ/N · L̄ⱼ) over the micro-batches equals .grad after the same k backward calls."""
    __tracebackhide__ = True
    from torch.func import functional_call, grad

    model = case.build_model()
    batches = case.micro_batches()
    n = case.rows
    buffer: dict[str, torch.Tensor] = {}
    for x, y in batches:

        def loss(params, x=x, y=y):
            return nn.functional.mse_loss(functional_call(model, params, (x,)), y) * (len(x) / n)

        for name, g in grad(loss)(trainable_parameters(model)).items():
            buffer[name] = g if name not in buffer else buffer[name] + g
    A.accumulate(model, batches)
    actual = {name: buffer.get(name) for name, _ in model.named_parameters()}
    bound = bounds.window_bound(case.model, model, batches, case.dtype)
    assert_grads_close(
        actual,
        G.grads(model),
        tolerance=bound.tolerances(bounds.accumulation_roundings(len(batches))),
        context=f"{case}; Σⱼ torch.func.grad of (mⱼ/N)·mean lossⱼ in a buffer vs .grad after {len(batches)} backward calls",
        what="buffer",
    )


def check_functional_call_leaves_the_modules_grad_alone(case: Case) -> None:
    """backward through functional_call(model, other θ): the module's .grad keeps its objects and values; the other θ get the gradient."""
    __tracebackhide__ = True
    from torch.func import functional_call

    model = case.build_model()
    (x0, y0), *rest = case.micro_batches()
    G.mse(model, x0, y0).backward()
    before = {name: p.grad for name, p in model.named_parameters()}
    snapshot = G.grads(model)
    other_model = case.model.build(dtype=case.dtype, device=case.device, seed=case.seed + 1)
    other = {name: p.detach().clone().requires_grad_(p.requires_grad) for name, p in other_model.named_parameters()}
    x, y = rest[0] if rest else (x0, y0)
    nn.functional.mse_loss(functional_call(model, other, (x,)), y).backward()
    context = f"{case}; backward through functional_call(model, other parameters) after one backward on the module"
    for name, p in model.named_parameters():
        if p.grad is not before[name]:
            raise AssertionError(f"functional_call's backward replaced the module's .grad of {name!r}; case: {context}")
    assert_grads_close(G.grads(model), snapshot, tolerance=EXACT, context=context, what="module .grad")
    expected = G.fresh_gradients(other_model, G.mse(other_model, x, y))
    bound = bounds.mse_gradient_bound(case.model, other_model, x, y, count=y.numel(), dtype=case.dtype)
    assert_grads_close(
        {name: t.grad for name, t in other.items()},
        expected,
        tolerance=bound.tolerances(2),
        context=context + ", expected the other parameters' .grad = their gradient",
        what="other parameter's .grad",
    )
