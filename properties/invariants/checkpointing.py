"""Activation checkpointing: micro-batches accumulated through torch.utils.checkpoint equal the same model without it."""

from __future__ import annotations

import torch
from hypothesis import strategies as st
from torch import nn
from torch.utils.checkpoint import checkpoint

from properties import accumulate as A
from properties import bounds
from properties import grads as G
from properties.case import Case
from properties.compare import assert_grads_close
from properties.models import ACTIVATIONS
from properties.strategies import cases, model_specs

CASES = cases(models=model_specs(["mlp"]))
REENTRANT = st.booleans()
DROPOUT = st.booleans()
P = 0.5  # a power of two: dropout scales by exactly 2, so a mask changes which terms are summed, not their rounding


class Segmented(nn.Module):
    """An MLP whose first segment σ(W₁x + b₁) (then dropout(p = 0.5), if asked) runs through checkpoint(…) or directly."""

    def __init__(self, mlp: nn.Module, *, checkpointed: bool, use_reentrant: bool, dropout: bool):
        super().__init__()
        self.mlp, self.checkpointed, self.use_reentrant, self.dropout = mlp, checkpointed, use_reentrant, dropout

    def segment(self, x: torch.Tensor) -> torch.Tensor:
        h = ACTIVATIONS[self.mlp.activation](self.mlp.hidden(x))
        return nn.functional.dropout(h, P, training=True) if self.dropout else h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.checkpointed:
            if self.use_reentrant:
                x = x.detach().requires_grad_(True)  # the reentrant variant passes gradients only to inputs that require them
            h = checkpoint(self.segment, x, use_reentrant=self.use_reentrant, preserve_rng_state=True)
        else:
            h = self.segment(x)
        return self.mlp.output(h)


def accumulated(case: Case, *, checkpointed: bool, use_reentrant: bool, dropout: bool) -> G.GradMap:
    """.grad after the case's micro-batches, each loss weighted mⱼ/N; dropout masks drawn from a seeded, forked RNG."""
    mlp = case.build_model()
    model = Segmented(mlp, checkpointed=checkpointed, use_reentrant=use_reentrant, dropout=dropout)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(case.seed)
        A.accumulate(model, case.micro_batches())
    return {name.removeprefix("mlp."): g for name, g in G.grads(model).items()}


def check_checkpointing_keeps_accumulation_unchanged(case: Case, use_reentrant: bool, dropout: bool) -> None:
    """checkpoint(use_reentrant=…) over σ(W₁x + b₁) (and dropout): the accumulated .grad equals the model's without checkpointing.

    Dropout's masks must be replayed by the recomputation (preserve_rng_state). Bound: the window's
    replayed bound; a p = 0.5 dropout scales by exactly 2 on the way in and out, so it at most
    multiplies every M by 4 (the masked terms drop out, the kept ones are doubled twice).
    """
    __tracebackhide__ = True
    expected = accumulated(case, checkpointed=False, use_reentrant=use_reentrant, dropout=dropout)
    actual = accumulated(case, checkpointed=True, use_reentrant=use_reentrant, dropout=dropout)
    model = case.build_model()
    bound = bounds.window_bound(case.model, model, case.micro_batches(), case.dtype)
    if dropout:
        bound = bounds.weighted_sum([bound], [4.0])
    assert_grads_close(
        actual,
        expected,
        tolerance=bound.tolerances(bounds.accumulation_roundings(len(case.sizes)) + 4),
        context=f"{case}; checkpoint(use_reentrant={use_reentrant}) over the first layer"
        + (", with dropout(p=0.5) inside" if dropout else "")
        + f", {len(case.sizes)} micro-batches accumulated, vs the same model without checkpointing",
    )
