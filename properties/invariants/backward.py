"""backward() sums into .grad: n calls give Σ gᵢ; frozen and non-leaf tensors get nothing."""

from __future__ import annotations

import copy
import warnings

import torch
from hypothesis import strategies as st
from torch import nn

from properties import bounds, versions
from properties import grads as G
from properties.case import Case
from properties.compare import EXACT, assert_grads_close
from properties.models import ACTIVATIONS
from properties.strategies import batch_splits, cases, dtypes, model_specs

VIAS = st.sampled_from(["Tensor.backward", "torch.autograd.backward"])


def sum_cases(device: str = "cpu"):
    """Any model, 1–5 micro-batches (so 1–5 backward calls), any dtype this torch runs on `device`."""
    return cases(dtype=dtypes(device=device), device=device)


ONE_GRAPH_CASES = cases(sizes=batch_splits(max_k=1))
TIED_CASES = cases(models=model_specs(["tied"]), sizes=batch_splits(max_k=1), dtype=dtypes())
FROZEN_CASES = cases(models=model_specs(["linear", "mlp", "tied"], frozen=True), sizes=batch_splits(max_k=1))
ANY_CASES = cases()
HOOK_CASES = cases(models=model_specs(frozen=st.booleans()))

BACKWARD_VIA = {
    "Tensor.backward": lambda loss: loss.backward(),
    "torch.autograd.backward": lambda loss: torch.autograd.backward([loss]),
}


def doubled_tolerances(once: G.GradMap) -> dict:
    """g + g = 2g is exact for a dense .grad; a sparse .grad holds g's entries twice, summed in some order when densified."""
    return {
        name: bounds.sum_tolerances(g.dtype, [{name: g}, {name: g}])[name] if g is not None and g.is_sparse else EXACT
        for name, g in once.items()
    }


def check_backward_sums(case: Case, via: str = "Tensor.backward") -> None:
    """After n backward calls with no reset, .grad = Σᵢ ∂Lᵢ/∂θ for every parameter."""
    __tracebackhide__ = True
    model = case.build_model()
    batches = case.micro_batches()
    individual = [G.fresh_gradients(model, G.mse(model, x, y)) for x, y in batches]
    for x, y in batches:
        BACKWARD_VIA[via](G.mse(model, x, y))
    assert_grads_close(
        G.grads(model),
        G.combine(individual),
        tolerance=bounds.sum_tolerances(case.dtype, individual),
        context=f"{case}; {len(batches)} calls of {via}, expected .grad = sum of the {len(batches)} gradients",
    )


def check_retained_graph_backward_twice_doubles(case: Case) -> None:
    """backward(retain_graph=True) twice on one graph: .grad = g + g = 2g, bitwise (dense) or within the sparse entries' sum bound."""
    __tracebackhide__ = True
    model = case.build_model()
    x, y = case.full_batch()
    loss = G.mse(model, x, y)
    once = G.fresh_gradients(model, loss, retain_graph=True)
    loss.backward(retain_graph=True)
    loss.backward()
    assert_grads_close(
        G.grads(model),
        G.combine([once, once]),
        tolerance=doubled_tolerances(once),
        context=f"{case}; backward(retain_graph=True) then backward() on one graph, expected .grad = 2·g",
    )


def untied_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[G.GradMap]:
    """Gradients of a tied model's shared parameters, taken separately for the first and for the second use."""
    shared = dict(model.shared.named_parameters())
    first = {name: p.detach().clone().requires_grad_(p.requires_grad) for name, p in shared.items()}
    second = {name: p.detach().clone().requires_grad_(p.requires_grad) for name, p in shared.items()}
    hidden = ACTIVATIONS[model.activation](nn.functional.linear(x, first["weight"], first.get("bias")))
    output = nn.functional.linear(hidden, second["weight"], second.get("bias"))
    loss = nn.functional.mse_loss(output, y)
    uses = []
    for copy_ in (first, second):
        names = [n for n, p in copy_.items() if p.requires_grad]
        computed = torch.autograd.grad(loss, [copy_[n] for n in names], retain_graph=True)
        uses.append({f"shared.{n}": g for n, g in zip(names, computed)})
    return uses


def check_tied_parameter_gets_sum_of_uses(case: Case, build=Case.build_model) -> None:
    """A parameter used twice gets ∂L/∂θ = ∂L/∂θ⁽¹⁾ + ∂L/∂θ⁽²⁾, the sum over its uses.

    The tied backward and the untied one compute each use's gradient through different kernels
    (a strided or offset weight against its contiguous copy), so they agree only within the
    replayed bound of the whole gradient, 2·γ_K·M, plus one rounding for the final sum.
    """
    __tracebackhide__ = True
    model = build(case)
    x, y = case.full_batch()
    uses = untied_gradients(model, x, y)
    bound = bounds.mse_gradient_bound(case.model, model, x, y, count=y.numel(), dtype=case.dtype)
    G.mse(model, x, y).backward()
    actual = {name: g for name, g in G.grads(model).items() if name in uses[0]}
    assert_grads_close(
        actual,
        G.combine(uses),
        tolerance={name: bound.tolerance(name, extra_roundings=1) for name in actual},
        context=f"{case}; tied weight used twice, expected .grad = first use's gradient + second use's",
    )


def broken_tie(case: Case) -> nn.Module:
    """A tied model whose second use runs on an unregistered copy: the tie is lost, as after a bad deepcopy."""
    model = case.build_model()
    detached_copy = copy.deepcopy(model.shared)
    object.__setattr__(model, "second_use", lambda h: detached_copy(h))
    return model


def check_frozen_and_non_leaf_get_no_grad(case: Case) -> None:
    """After backward: frozen parameters and every non-leaf tensor have .grad None; trainable ones have a .grad."""
    __tracebackhide__ = True
    model = case.build_model()
    x, y = case.full_batch()
    outputs: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda m, i, o: outputs.append(o)) for m in model.modules()]
    try:
        prediction = model(x)
    finally:
        for handle in handles:
            handle.remove()
    loss = nn.functional.mse_loss(prediction, y)
    loss.backward()
    for name, p in model.named_parameters():
        if p.requires_grad and p.grad is None:
            raise AssertionError(f"trainable parameter {name!r} got no .grad; case: {case}")
        if name in case.model.frozen and p.grad is not None:
            raise AssertionError(
                f"frozen parameter {name!r} (requires_grad_(False) at build) got a .grad with max |value| "
                f"{float(p.grad.abs().max()):.3g}; expected None; case: {case}"
            )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for label, tensor in [("loss", loss)] + [(f"output of module #{i}", t) for i, t in enumerate(outputs)]:
            if tensor.is_leaf or tensor.grad is None:
                continue
            raise AssertionError(
                f"non-leaf tensor ({label}, shape {tuple(tensor.shape)}) has a .grad after backward; expected None; case: {case}"
            )


def check_autograd_grad_leaves_grad_untouched(case: Case) -> None:
    """torch.autograd.grad returns ∂L/∂θ and leaves every .grad as it was: same object, same values."""
    __tracebackhide__ = True
    model = case.build_model()
    *earlier, (x, y) = case.micro_batches()
    for xe, ye in earlier:
        G.mse(model, xe, ye).backward()
    before = {name: p.grad for name, p in model.named_parameters()}
    snapshot = G.grads(model)
    returned = G.fresh_gradients(model, G.mse(model, x, y))
    for name, p in model.named_parameters():
        if p.grad is not before[name]:
            raise AssertionError(f"torch.autograd.grad replaced .grad of {name!r}; case: {case}")
    assert_grads_close(G.grads(model), snapshot, tolerance=EXACT, context=f"{case}; .grad before vs after torch.autograd.grad")
    reference = case.build_model()
    G.mse(reference, x, y).backward()
    assert_grads_close(
        returned,
        G.grads(reference),
        tolerance=EXACT,
        context=f"{case}; torch.autograd.grad vs backward() on a fresh model",
        what="returned gradient",
    )


def check_post_accumulate_grad_hook_fires_once_per_backward(case: Case) -> None:
    """With a post-accumulate-grad hook on every trainable parameter, n backward calls fire it n times each."""
    __tracebackhide__ = True
    if not versions.has_post_accumulate_grad_hook():
        raise NotImplementedError("this torch has no Tensor.register_post_accumulate_grad_hook")
    model = case.build_model()
    calls = {name: 0 for name, _ in G.trainable(model)}
    seen_grads = {name: [] for name in calls}

    def counter(name):
        def hook(parameter):
            calls[name] += 1
            seen_grads[name].append(parameter.grad is not None)

        return hook

    handles = [p.register_post_accumulate_grad_hook(counter(name)) for name, p in G.trainable(model)]
    try:
        for x, y in case.micro_batches():
            G.mse(model, x, y).backward()
    finally:
        for handle in handles:
            handle.remove()
    n = len(case.sizes)
    wrong = {name: count for name, count in calls.items() if count != n}
    if wrong:
        raise AssertionError(f"after {n} backward calls the hook fired {wrong} times (expected {n} each); case: {case}")
    missing = [name for name, flags in seen_grads.items() if not all(flags)]
    if missing:
        raise AssertionError(f"hook ran before .grad was accumulated for {missing}; case: {case}")
