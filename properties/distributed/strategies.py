"""Hypothesis strategies for DistributedCases: world size, k, unequal micro-batch sizes, Linear or MLP, lr, DDP options."""

from __future__ import annotations

from typing import Callable, Optional

import torch
from hypothesis import strategies as st

from properties.case import Case
from properties.distributed.cases import DistributedCase
from properties.distributed.options import BUCKET_CAP_MB, SMALL_BUCKET_CAP_MB, DDPOptions
from properties.models import LAYOUTS
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
    layouts: tuple[str, ...] = LAYOUTS,
) -> DistributedCase:
    """W ranks, k micro-batches each of 1…max_size rows (usually unequal), a Linear or MLP stored in one of `layouts`, float64."""
    ranks, per_rank, largest = draw(as_strategy(world_size)), draw(as_strategy(k)), draw(as_strategy(max_size))
    sizes = draw(st.lists(st.integers(1, largest), min_size=ranks * per_rank, max_size=ranks * per_rank))
    spec = draw(model_specs(kinds, max_features=3, layouts=layouts))
    case = Case(spec, tuple(sizes), torch.float64, draw(seeds()))
    return DistributedCase(case, ranks, draw(st.sampled_from(LEARNING_RATES)))


@st.composite
def ddp_options(draw, micro_batches: int, *, join: bool) -> DDPOptions:
    """DDP's arguments drawn together, with `extra` unused in some micro-batches when find_unused_parameters is on.

    static_graph promises the same used parameters in every iteration (DDP's documented contract),
    so it is never drawn with a parameter unused in some micro-batches only.
    """
    static_graph = draw(st.booleans())
    unused = not static_graph and micro_batches >= 2 and draw(st.booleans())
    extra_in: tuple[int, ...] = ()
    if unused:
        chosen = draw(st.sets(st.integers(0, micro_batches - 1), min_size=1, max_size=micro_batches - 1))
        extra_in = tuple(sorted(chosen))
    return DDPOptions(
        static_graph=static_graph,
        gradient_as_bucket_view=draw(st.booleans()),
        bucket_cap_mb=draw(st.sampled_from((BUCKET_CAP_MB, SMALL_BUCKET_CAP_MB))),
        find_unused_parameters=unused or draw(st.booleans()),
        broadcast_buffers=draw(st.booleans()),
        warmup=draw(st.booleans()),
        join=join,
        extra_in=extra_in,
    )


@st.composite
def ddp_option_cases(
    draw,
    *,
    world_size: ValueOrStrategy[int],
    k: ValueOrStrategy[int] = MICRO_BATCHES_PER_RANK,
    join: ValueOrStrategy[bool] = st.booleans(),
    idle: ValueOrStrategy[bool] = st.booleans(),
    options: Optional[Callable[..., st.SearchStrategy[DDPOptions]]] = None,
) -> DistributedCase:
    """A distributed case under drawn DDP options; with join() and `idle`, ranks W − 1 … may hold no micro-batch (their data ran out)."""
    ranks, per_rank = draw(as_strategy(world_size)), draw(as_strategy(k))
    join = draw(as_strategy(join))
    active = draw(st.integers(1, ranks - 1)) if join and draw(as_strategy(idle)) else ranks
    sizes = draw(st.lists(st.integers(1, 3), min_size=active * per_rank, max_size=active * per_rank))
    spec = draw(model_specs(("linear", "mlp"), max_features=3))
    case = Case(spec, tuple(sizes), torch.float64, draw(seeds()))
    drawn = draw((options or ddp_options)(active * per_rank, join=join))
    return DistributedCase(case, ranks, draw(st.sampled_from(LEARNING_RATES)), drawn, active)
