"""The loss a recipe is handed and what it averages over: loss_fn(ŷ, y) = Σ over counted items ℓᵢ / count(y)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from hypothesis.errors import InvalidArgument
from torch import nn

IGNORE_INDEX = -100
MEAN_OVER_ELEMENTS = (nn.MSELoss, nn.L1Loss, nn.SmoothL1Loss, nn.HuberLoss)
MEAN_OVER_TARGETS = (nn.CrossEntropyLoss, nn.NLLLoss)


class TokenCrossEntropy(nn.CrossEntropyLoss):
    """Token cross-entropy: logits (…, V) and labels (…); the mean over labels ≠ ignore_index: Σ CE / #counted tokens."""

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=self.ignore_index
        )

    def __repr__(self) -> str:
        return f"TokenCrossEntropy(ignore_index={self.ignore_index})"


class CausalLMCrossEntropy(nn.CrossEntropyLoss):
    """Causal-LM cross-entropy: logits (…, T, V) at position t scored against labels[…, t + 1]; the mean over the shifted
    labels ≠ ignore_index: Σ CE / #(labels[…, 1:] ≠ ignore_index), as Hugging Face's causal LMs compute their loss."""

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        shifted = logits[..., :-1, :]
        return nn.functional.cross_entropy(
            shifted.reshape(-1, shifted.shape[-1]), labels[..., 1:].reshape(-1), ignore_index=self.ignore_index
        )

    def __repr__(self) -> str:
        return f"CausalLMCrossEntropy(ignore_index={self.ignore_index})"


def elements(target: torch.Tensor) -> int:
    """Every element of the target counts (a mean over all of them)."""
    return target.numel()


def rows(target: torch.Tensor) -> int:
    """Every row counts once (a mean over rows)."""
    return len(target)


@dataclass(frozen=True)
class RecipeLoss:
    """fn(ŷ, y) is the mean of a per-item loss over the count(y) items y counts; `fn` is what the recipe is handed."""

    fn: Callable
    count: Callable[[torch.Tensor], int]
    name: str

    def __repr__(self) -> str:
        return self.name

    def counted(self, target: torch.Tensor) -> int:
        """How many items of `target` the mean is over (a plain int)."""
        return int(self.count(target))


def counted_targets(ignore_index: int) -> Callable[[torch.Tensor], int]:
    """The number of targets ≠ ignore_index."""

    def count(target: torch.Tensor) -> int:
        return int((target != ignore_index).sum())

    return count


def counted_next_tokens(ignore_index: int) -> Callable[[torch.Tensor], int]:
    """The number of shifted labels labels[…, 1:] ≠ ignore_index: the tokens a causal LM is scored on."""

    def count(target: torch.Tensor) -> int:
        return int((target[..., 1:] != ignore_index).sum())

    return count


def check_ignore_index(ignore_index) -> None:
    """InvalidArgument unless ignore_index is an integer."""
    if not isinstance(ignore_index, int) or isinstance(ignore_index, bool):
        raise InvalidArgument(f"ignore_index={ignore_index!r} must be an integer")


def mean_squared_error() -> RecipeLoss:
    """nn.MSELoss(): (1/c)·Σ(ŷ − y)² over all c elements (the loss every recipe is handed by default)."""
    return RecipeLoss(nn.MSELoss(), elements, "MSELoss()")


def token_cross_entropy(ignore_index: int = IGNORE_INDEX) -> RecipeLoss:
    """Token cross-entropy over the labels ≠ ignore_index, unshifted (position t against label t): Σ CE / #counted tokens."""
    check_ignore_index(ignore_index)
    loss = TokenCrossEntropy(ignore_index=ignore_index)
    return RecipeLoss(loss, counted_targets(ignore_index), repr(loss))


def causal_lm_cross_entropy(ignore_index: int = IGNORE_INDEX) -> RecipeLoss:
    """A causal LM's loss, as Hugging Face computes it: position t against label t + 1, Σ CE / #(labels[…, 1:] ≠ ignore_index).

    The labels are the input ids with ignore_index on padding (the Hugging Face convention); the
    window's mean is over the shifted labels it counts, so micro-batches weigh by counted tokens.
    """
    check_ignore_index(ignore_index)
    loss = CausalLMCrossEntropy(ignore_index=ignore_index)
    return RecipeLoss(loss, counted_next_tokens(ignore_index), repr(loss))


MSE = mean_squared_error()


def as_recipe_loss(value) -> RecipeLoss:
    """A RecipeLoss as it is; a mean-reduced torch loss with its counting; a plain callable as a mean over rows.

    InvalidArgument for anything else, and for a torch loss that is not mean-reduced: the window's
    reference is the mean loss over the window's items, which a sum-reduced loss is not.
    """
    if isinstance(value, RecipeLoss):
        return value
    if isinstance(value, nn.Module):
        reduction = getattr(value, "reduction", "mean")
        if reduction != "mean":
            raise InvalidArgument(
                f"loss={value!r} has reduction={reduction!r}: the recipe contract hands a mean-reduced loss "
                "(the reference is one step on the window's mean loss); use reduction='mean'"
            )
        if isinstance(value, CausalLMCrossEntropy):
            return RecipeLoss(value, counted_next_tokens(value.ignore_index), repr(value))
        if isinstance(value, MEAN_OVER_TARGETS):
            return RecipeLoss(value, counted_targets(value.ignore_index), repr(value))
        if isinstance(value, MEAN_OVER_ELEMENTS):
            return RecipeLoss(value, elements, repr(value))
    if callable(value) and not isinstance(value, type):
        name = getattr(value, "__qualname__", None) or repr(value)
        return RecipeLoss(value, rows, f"{name} (a mean over rows)")
    raise InvalidArgument(
        f"loss={value!r} must be a callable loss_fn(output, target) that is a mean over what it counts: a RecipeLoss, "
        "a mean-reduced torch loss (nn.MSELoss(), nn.CrossEntropyLoss(ignore_index=…)), token_cross_entropy(), "
        "causal_lm_cross_entropy(), "
        "or a function (taken as a mean over rows)"
    )
