"""Padded token sequences with ignore_index labels, and a tiny token model: the suite's data and model for token losses."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from hypothesis import strategies as st
from torch import nn

from properties.recipes.losses import IGNORE_INDEX
from properties.strategies import ValueOrStrategy, as_strategy, check_integer, seeds

PAD = 0


def padded(lengths: tuple[int, ...], width: int, vocab: int, seed: int, ignore_index: int):
    """x: N×T token ids, PAD after each row's length; y: next-token labels, ignore_index on padding and the first token."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, vocab, (len(lengths), width + 1), generator=generator)
    x, y = tokens[:, :-1].clone(), tokens[:, 1:].clone()
    for row, length in enumerate(lengths):
        x[row, length:] = PAD
        y[row, length:] = ignore_index
    y[:, 0] = torch.where(torch.tensor(lengths) > 1, torch.full((len(lengths),), ignore_index), y[:, 0])
    return x, y


def token_sequences(
    *,
    vocab: ValueOrStrategy[int] = 8,
    max_rows: ValueOrStrategy[int] = 6,
    max_length: ValueOrStrategy[int] = 5,
    ignore_index: int = IGNORE_INDEX,
) -> st.SearchStrategy[tuple[torch.Tensor, torch.Tensor]]:
    """Datasets (x, y) of N ≤ max_rows sequences padded to T ≤ max_length, each row with its own length L ≥ 1.

    Labels are ignore_index on padding and, in rows longer than one token, on the first position (a
    prompt token), so rows count 1 … L − 1 tokens: every row counts at least one, and micro-batches
    of equal rows count unequal tokens (what makes a mean over rows differ from the mean over tokens).
    """
    check_integer("vocab", vocab, at_least=2)
    check_integer("max_rows", max_rows, at_least=1)
    check_integer("max_length", max_length, at_least=1)
    check_integer("ignore_index", ignore_index, at_least=-(2**62))

    return _token_sequences(vocab=vocab, max_rows=max_rows, max_length=max_length, ignore_index=ignore_index)


def _drawn_token_sequences():
    """The composite strategy behind token_sequences (named so that it prints as the call that made it)."""

    @st.composite
    def token_sequences(draw, *, vocab, max_rows, max_length, ignore_index):
        v, rows, width = (draw(as_strategy(value)) for value in (vocab, max_rows, max_length))
        count = draw(st.integers(1, rows))
        lengths = tuple(draw(st.lists(st.integers(1, width), min_size=count, max_size=count)))
        return padded(lengths, max(lengths), v, draw(seeds()), ignore_index)

    return token_sequences


_token_sequences = _drawn_token_sequences()


class TokenModel(nn.Module):
    """Embedding(V, d) → h_t = tanh(e_t + W·e_{t−1}) → logits_t = U·h_t + b: each token's logits see the previous token."""

    def __init__(self, vocab: int, width: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab, width)
        self.mix = nn.Linear(width, width, bias=False)
        self.head = nn.Linear(width, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.embedding(x)
        previous = nn.functional.pad(e, (0, 0, 1, 0))[:, :-1]
        return self.head(torch.tanh(e + self.mix(previous)))


@dataclass(frozen=True)
class TokenModelFactory:
    """Builds a TokenModel(vocab, width): a model factory for check_recipe(model=…)."""

    vocab: int = 8
    width: int = 4

    def __call__(self) -> TokenModel:
        return TokenModel(self.vocab, self.width)

    def __repr__(self) -> str:
        return f"TokenModel(vocab={self.vocab}, width={self.width})"
