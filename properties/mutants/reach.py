"""Defects that live where small examples never go: past a size, on a long parameter list, on a strided layout, late in a run."""

from __future__ import annotations

import functools

import torch
from torch import nn

from properties.mutants import Mutant
from properties.mutants.autograd import _patch_zero_grad, leaves_of
from properties.mutants.optim import ADAM_MODULE, SGD_MODULE

VECTOR_BLOCK = 1024
"""The accumulation defect: gradients of more than this many elements lose the last partial block of an accumulation."""
LIST_CHUNK = 16
"""The list defects: tensors past this index in one call are left out, as a chunked multi-tensor loop that drops its last chunk."""
WRAPPED_STEP = 8
"""The late-run defect: Adam's bias correction uses min(t, this)."""
ROW_BLOCK = 32
"""The batch defect: a mean over more rows than this sums whole blocks of rows only."""


def _after_backward(monkeypatch, change) -> None:
    """torch.autograd.backward, then change(leaf, .grad before, .grad after) for every leaf that already had a .grad."""
    original = torch.autograd.backward

    @functools.wraps(original)
    def backward(tensors, *args, **kwargs):
        before = {id(leaf): (leaf, leaf.grad.detach().clone()) for leaf in leaves_of(tensors) if leaf.grad is not None}
        result = original(tensors, *args, **kwargs)
        for leaf, old in before.values():
            if leaf.grad is not None and not leaf.grad.is_sparse:
                change(leaf, old, leaf.grad)
        return result

    monkeypatch.setattr(torch.autograd, "backward", backward)


def _drop_last_block(leaf, old, grad) -> None:
    """Past VECTOR_BLOCK elements, the elements after the last whole block keep their old value (no addition)."""
    n = grad.numel()
    if n <= VECTOR_BLOCK:
        return
    start = n - (n % VECTOR_BLOCK or VECTOR_BLOCK)
    with torch.no_grad():
        flat = grad.reshape(-1).clone()
        flat[start:] = old.reshape(-1)[start:]
        grad.copy_(flat.view(grad.shape))


def _added_in_memory_order(leaf, old, grad) -> None:
    """For a non-contiguous leaf, the new gradient is added as if laid out contiguously: its values land in the leaf's memory order."""
    if leaf.is_contiguous() or leaf.dim() < 2:
        return
    with torch.no_grad():
        new = (grad - old).contiguous().flatten()
        grad.copy_(old + torch.as_strided(new, leaf.shape, leaf.stride()))


def _step_first_chunk(monkeypatch) -> None:
    """SGD and Adam/AdamW update only the first LIST_CHUNK parameters of each parameter group."""
    sgd, adam = SGD_MODULE.sgd, ADAM_MODULE.adam

    @functools.wraps(sgd)
    def chunked_sgd(params, d_p_list, momentum_buffer_list, *args, **kwargs):
        kept = slice(0, LIST_CHUNK)
        buffers = momentum_buffer_list[kept]
        result = sgd(params[kept], d_p_list[kept], buffers, *args, **kwargs)
        momentum_buffer_list[kept] = buffers
        return result

    @functools.wraps(adam)
    def chunked_adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, *args, **kwargs):
        kept = slice(0, LIST_CHUNK)
        lists = (params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps)
        return adam(*(items[kept] for items in lists), *args, **kwargs)

    monkeypatch.setattr(SGD_MODULE, "sgd", chunked_sgd)
    monkeypatch.setattr(ADAM_MODULE, "adam", chunked_adam)


def _adam_correction_stops(monkeypatch) -> None:
    """Adam/AdamW from step WRAPPED_STEP + 1 on bias-correct with t = WRAPPED_STEP (the stored step count stays right)."""
    adam = ADAM_MODULE.adam

    @functools.wraps(adam)
    def stalled_adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, *args, **kwargs):
        late = [(step, float(step)) for step in state_steps if float(step) >= WRAPPED_STEP]
        for step, _ in late:
            step.fill_(WRAPPED_STEP - 1)
        result = adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, *args, **kwargs)
        for step, value in late:
            step.fill_(value + 1)
        return result

    monkeypatch.setattr(ADAM_MODULE, "adam", stalled_adam)


def _mean_over_whole_blocks(monkeypatch) -> None:
    """mse_loss(reduction='mean') over more than ROW_BLOCK rows sums only whole blocks of ROW_BLOCK rows (divided by all)."""
    original = nn.functional.mse_loss

    @functools.wraps(original)
    def mse_loss(input, target, *args, reduction: str = "mean", **kwargs):
        rows = input.shape[0] if input.dim() else 0
        if reduction != "mean" or rows <= ROW_BLOCK or args or kwargs:
            return original(input, target, *args, reduction=reduction, **kwargs)
        kept = rows - rows % ROW_BLOCK
        return original(input[:kept], target[:kept], reduction="sum") / target.numel()

    monkeypatch.setattr(nn.functional, "mse_loss", mse_loss)


ACCUMULATION_DROPS_LAST_BLOCK = Mutant(
    "accumulation-drops-last-block-past-1024",
    f"adding into a .grad of more than {VECTOR_BLOCK} elements skips the last partial block (a vectorised loop's tail)",
    lambda mp: _after_backward(mp, _drop_last_block),
)
STRIDED_ACCUMULATION = Mutant(
    "strided-accumulation-in-memory-order",
    "accumulating into a non-contiguous parameter's .grad adds the new gradient in the wrong element order",
    lambda mp: _after_backward(mp, _added_in_memory_order),
)
ZERO_GRAD_FIRST_CHUNK = Mutant(
    "zero-grad-resets-first-16-tensors",
    f"Module/Optimizer.zero_grad reset only the first {LIST_CHUNK} parameters (a long list's last chunk dropped)",
    lambda mp: _patch_zero_grad(mp, first=LIST_CHUNK),
)
STEP_FIRST_CHUNK = Mutant(
    "step-updates-first-16-tensors",
    f"SGD/Adam/AdamW update only the first {LIST_CHUNK} parameters of a group (a long list's last chunk dropped)",
    _step_first_chunk,
)
ADAM_CORRECTION_STOPS = Mutant(
    "adam-bias-correction-stops-at-step-8",
    f"Adam/AdamW bias-correct with t = min(t, {WRAPPED_STEP}) from step {WRAPPED_STEP + 1} on",
    _adam_correction_stops,
)
MEAN_OVER_WHOLE_BLOCKS = Mutant(
    "mse-mean-drops-rows-past-last-block",
    f"mse_loss(reduction='mean') over more than {ROW_BLOCK} rows leaves out the rows past the last whole block of {ROW_BLOCK}",
    _mean_over_whole_blocks,
)

MUTANTS = (
    ACCUMULATION_DROPS_LAST_BLOCK,
    STRIDED_ACCUMULATION,
    ZERO_GRAD_FIRST_CHUNK,
    STEP_FIRST_CHUNK,
    ADAM_CORRECTION_STOPS,
    MEAN_OVER_WHOLE_BLOCKS,
)
