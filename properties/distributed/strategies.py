"""Hypothesis strategies for DistributedCases: world size, k, unequal micro-batch sizes, Linear or MLP, lr."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from properties.case import Case
from properties.distributed.cases import DistributedCase
from properties.strategies import ValueOrStrategy, as_strategy, model_specs, seeds

LEARNING_RATES = (0.1, 0.5)
MICRO_BATCHES_PER_RANK = st.integers(1, 3)


@st.composite
def distributed_cases(
    draw,
    *,
    world_size: ValueOrStrategy[int],
    k: ValueOrStrategy[int] = MICRO_BATCHES_PER_RANK,
    max_size: ValueOrStrategy[int] = 3,
    kinds: tuple[str, ...] = ("linear", "mlp"),
) -> DistributedCase:
    """W ranks, k micro-batches each of 1…max_size rows (usually unequal), a Linear or MLP, float64."""
    ranks, per_rank, largest = draw(as_strategy(world_size)), draw(as_strategy(k)), draw(as_strategy(max_size))
    sizes = draw(st.lists(st.integers(1, largest), min_size=ranks * per_rank, max_size=ranks * per_rank))
    spec = draw(model_specs(kinds, max_features=3))
    case = Case(spec, tuple(sizes), torch.float64, draw(seeds()))
    return DistributedCase(case, ranks, draw(st.sampled_from(LEARNING_RATES)))
