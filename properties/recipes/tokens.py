"""Padded token sequences with ignore_index labels, and a tiny token model: the suite's data and model for token losses."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from torch import nn

from properties.lazy import lazy_strategy
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


@lazy_strategy
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


def causal_lm_batch(lengths: tuple[int, ...], vocab: int, pad_token_id: int, seed: int, ignore_index: int, attention_mask: bool):
    """input_ids N×T (pad_token_id after each row's length), labels = input_ids with ignore_index on padding (Hugging Face)."""
    generator = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.randint(0, vocab - 1, (len(lengths), width), generator=generator)
    ids = ids + (ids >= pad_token_id).long()  # every id but the pad token
    mask = torch.arange(width).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    input_ids = torch.where(mask, ids, torch.full_like(ids, pad_token_id))
    labels = torch.where(mask, input_ids, torch.full_like(ids, ignore_index))
    x = {"input_ids": input_ids, "attention_mask": mask.long()} if attention_mask else input_ids
    return x, labels


@lazy_strategy
def causal_lm_sequences(
    *,
    vocab: ValueOrStrategy[int] = 16,
    max_rows: ValueOrStrategy[int] = 6,
    max_length: ValueOrStrategy[int] = 6,
    min_length: ValueOrStrategy[int] = 2,
    pad_token_id: int = PAD,
    ignore_index: int = IGNORE_INDEX,
    attention_mask: bool = False,
) -> st.SearchStrategy[tuple]:
    """Datasets (x, labels) for a causal LM, in the Hugging Face convention: N ≤ max_rows right-padded sequences of
    lengths min_length … max_length, labels = input_ids with ignore_index on padding (the model shifts them).

    x is the input_ids tensor, or with attention_mask=True the mapping {input_ids, attention_mask} (passed to the
    model as keywords). A row of L tokens counts L − 1 shifted labels, so with min_length ≥ 2 (the default) no
    micro-batch, and no window, counts zero tokens; min_length=1 asks for rows that count none.
    """
    check_integer("vocab", vocab, at_least=2)
    check_integer("max_rows", max_rows, at_least=1)
    check_integer("min_length", min_length, at_least=1)
    check_integer("max_length", max_length, at_least=1)
    check_integer("pad_token_id", pad_token_id, at_least=0)
    check_integer("ignore_index", ignore_index, at_least=-(2**62))
    if not isinstance(vocab, st.SearchStrategy) and pad_token_id >= vocab:
        raise InvalidArgument(f"pad_token_id={pad_token_id} must be a token id, below vocab={vocab}")
    if not any(isinstance(v, st.SearchStrategy) for v in (min_length, max_length)) and min_length > max_length:
        raise InvalidArgument(f"min_length={min_length} must be at most max_length={max_length}")
    if not isinstance(attention_mask, bool):
        raise InvalidArgument(f"attention_mask={attention_mask!r} must be True or False")
    return _causal_lm_sequences(
        vocab=vocab,
        max_rows=max_rows,
        max_length=max_length,
        min_length=min_length,
        pad_token_id=pad_token_id,
        ignore_index=ignore_index,
        attention_mask=attention_mask,
    )


def _drawn_causal_lm_sequences():
    """The composite strategy behind causal_lm_sequences (named so that it prints as the call that made it)."""

    @st.composite
    def causal_lm_sequences(draw, *, vocab, max_rows, max_length, min_length, pad_token_id, ignore_index, attention_mask):
        v, rows, longest, shortest = (draw(as_strategy(value)) for value in (vocab, max_rows, max_length, min_length))
        if pad_token_id >= v or shortest > longest:
            raise InvalidArgument(f"drew vocab={v}, min_length={shortest}, max_length={longest}, pad_token_id={pad_token_id}")
        count = draw(st.integers(1, rows))
        lengths = tuple(draw(st.lists(st.integers(shortest, longest), min_size=count, max_size=count)))
        return causal_lm_batch(lengths, v, pad_token_id, draw(seeds()), ignore_index, attention_mask)

    return causal_lm_sequences


_causal_lm_sequences = _drawn_causal_lm_sequences()
