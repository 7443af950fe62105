"""What the model returns and what the loss reads: a tensor, or a model output's `.logits` (Hugging Face), or `output=`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Callable, Optional

import torch
from hypothesis.errors import InvalidArgument

from properties.recipes.batches import Inputs


def call_model(model: torch.nn.Module, x: Inputs):
    """model(x) for a tensor, model(**x) for a mapping of keyword inputs (input_ids=…, attention_mask=…)."""
    return model(**x) if isinstance(x, Mapping) else model(x)


def loss_input(output, select: Optional[Callable] = None) -> torch.Tensor:
    """The tensor the loss reads from what the model returned: select(output) when given, else the tensor itself,
    else a model output's `.logits`."""
    if select is not None:
        output = select(output)
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    raise InvalidArgument(
        f"the model returned {type(output).__name__}, which the loss cannot read: return a tensor, or an output with "
        "`.logits` (as Hugging Face models do), or pass output= a function from what the model returns to the loss's "
        "input (e.g. output=lambda out: out[0])"
    )


class OutputLoss:
    """loss(ŷ, y) on whatever the model returned: the loss the recipe is handed reads `.logits` (or output=) first;
    `count(y)` is the number of items its mean is over (rows, elements, or tokens ≠ ignore_index); other attributes
    (ignore_index, reduction) are the wrapped loss's."""

    def __init__(self, fn: Callable, select: Optional[Callable] = None, count: Optional[Callable] = None):
        self.fn, self.select, self.counter = fn, select, count

    def __call__(self, output, target, *args, **kwargs):
        return self.fn(loss_input(output, self.select), target, *args, **kwargs)

    def count(self, target: torch.Tensor) -> int:
        """cⱼ: how many items of `target` this loss's mean is over (the weights of a correct accumulation are cⱼ / c)."""
        return int(self.counter(target)) if self.counter is not None else len(target)

    def __getattr__(self, name: str):
        if name in ("fn", "select", "counter"):
            raise AttributeError(name)
        return getattr(self.fn, name)

    def __repr__(self) -> str:
        return repr(self.fn)
