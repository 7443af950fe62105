"""Token-level losses: with ignore_index, the window's normaliser is its count of non-ignored tokens, not k."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from hypothesis import assume
from hypothesis import strategies as st
from torch import nn

from properties import bounds
from properties import grads as G
from properties import reference as R
from properties.compare import Tolerance, assert_grads_close
from properties.models import ModelSpec
from properties.strategies import as_strategy, batch_splits, seeds

IGNORE_INDEX = -100
WINDOW_TOKENS = "window tokens"
MEAN_OF_MEANS = "mean of means"
PROCEDURES = {
    WINDOW_TOKENS: "Σⱼ (sum of token losses)ⱼ / (non-ignored tokens in the window)",
    MEAN_OF_MEANS: "Σⱼ (mean token loss)ⱼ / k",
}


@dataclass(frozen=True)
class TokenCase:
    """A per-token classifier Linear(features → classes) over N sequences of `length` tokens, cut into micro-batches.

    Targets are ignore_index on padding (each sequence has a random length, 0 included) and, with
    `padding`, on randomly masked tokens; without `padding` every token counts.
    """

    features: int
    classes: int
    length: int
    sizes: tuple[int, ...]
    seed: int = 0
    padding: bool = True

    def __repr__(self) -> str:
        pad = "padded and masked" if self.padding else "unpadded"
        return (
            f"token classifier Linear({self.features}→{self.classes}), {pad} sequences of {self.length} tokens, "
            f"micro-batches {list(self.sizes)}, seed {self.seed}"
        )

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(repr(self))

    def build_model(self) -> nn.Module:
        """The classifier, seeded by the case's seed (float64, CPU)."""
        return ModelSpec("linear", self.features, self.classes).build(dtype=torch.float64, device="cpu", seed=self.seed)

    def full_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, targets): x is (N, length, features); targets (N, length) with ignore_index on padded and masked tokens."""
        generator = torch.Generator().manual_seed(self.seed + 1)
        n = sum(self.sizes)
        x = torch.randn(n, self.length, self.features, generator=generator, dtype=torch.float64)
        targets = torch.randint(0, self.classes, (n, self.length), generator=generator)
        if self.padding:
            lengths = torch.randint(0, self.length + 1, (n, 1), generator=generator)
            ignored = (torch.arange(self.length) >= lengths) | (torch.rand(n, self.length, generator=generator) < 0.25)
            targets = targets.masked_fill(ignored, IGNORE_INDEX)
        return x, targets

    def micro_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The full batch cut, in order, into micro-batches of the case's sizes."""
        x, t = self.full_batch()
        return list(zip(torch.split(x, list(self.sizes)), torch.split(t, list(self.sizes))))

    def token_counts(self) -> list[int]:
        """Non-ignored tokens per micro-batch."""
        return [counted(t) for _, t in self.micro_batches()]


def counted(targets: torch.Tensor) -> int:
    """How many targets are not ignore_index."""
    return int((targets != IGNORE_INDEX).sum())


def token_loss(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy over every token, ignore_index skipped; 'mean' divides by the non-ignored count."""
    logits = model(x)
    return nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction=reduction
    )


@st.composite
def token_cases(draw, sizes=batch_splits(max_k=4), padding=True, every_micro_batch_counts=False) -> TokenCase:
    """Token cases whose window has a non-ignored token (every micro-batch has one, if asked)."""
    case = TokenCase(
        features=draw(st.integers(1, 3)),
        classes=draw(st.integers(2, 4)),
        length=draw(st.integers(1, 4)),
        sizes=draw(as_strategy(sizes)),
        seed=draw(seeds()),
        padding=draw(as_strategy(padding)),
    )
    counts = case.token_counts()
    assume(min(counts) > 0 if every_micro_batch_counts else sum(counts) > 0)
    return case


CASES = token_cases()
CASES_WITH_TOKENS_EVERYWHERE = token_cases(every_micro_batch_counts=True)


@st.composite
def equal_count_cases(draw) -> TokenCase:
    """Unpadded sequences in micro-batches of one size: every micro-batch has the same token count."""
    size = draw(st.integers(1, 3))
    return draw(token_cases(sizes=st.integers(1, 4).map(lambda k: (size,) * k), padding=False))


EQUAL_COUNT_CASES = equal_count_cases()


def accumulate_tokens(model: nn.Module, micro_batches, how: str) -> None:
    """One backward per micro-batch, normalised as `how` names (see PROCEDURES)."""
    total, k = sum(counted(t) for _, t in micro_batches), len(micro_batches)
    for x, t in micro_batches:
        if how == WINDOW_TOKENS:
            loss = token_loss(model, x, t, reduction="sum") / total
        elif how == MEAN_OF_MEANS:
            loss = token_loss(model, x, t) / k
        else:
            raise ValueError(f"unknown procedure {how!r}; expected one of {list(PROCEDURES)}")
        loss.backward()


def token_tolerances(case: TokenCase, model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> dict[str, Tolerance]:
    """2·γ_K·M for the window's mean token loss gradient, M and K from `bounds.cross_entropy_gradient_bound`.

    Token t adds (pₜ − eₜ)·xₜᵀ/T and (pₜ − eₜ)/T (softmax minus one-hot) to the gradient over the
    window's T counted tokens; k micro-batches add k + 4 roundings (summing into .grad, the division by T).
    """
    kept = targets.reshape(-1) != IGNORE_INDEX
    features = x.reshape(-1, case.features)[kept]
    count = max(int(kept.sum()), 1)
    bound = bounds.cross_entropy_gradient_bound(model, features, targets.reshape(-1)[kept], count=count, terms=targets.numel())
    return bound.tolerances(bounds.accumulation_roundings(len(case.sizes)))


def check_token_accumulation_matches_full_batch(case: TokenCase, how: str = WINDOW_TOKENS) -> None:
    """After one backward per micro-batch normalised as `how` says, .grad = ∂/∂θ of the window's mean token loss."""
    __tracebackhide__ = True
    model = case.build_model()
    batches = case.micro_batches()
    x, targets = R.concatenated(batches)
    expected = G.fresh_gradients(model, token_loss(model, x, targets))
    accumulate_tokens(model, batches, how)
    assert_grads_close(
        G.grads(model),
        expected,
        tolerance=token_tolerances(case, model, x, targets),
        context=(
            f"{case}; non-ignored tokens per micro-batch {case.token_counts()}; accumulated {PROCEDURES[how]} "
            f"vs the mean over the window's {counted(targets)} tokens"
        ),
    )
