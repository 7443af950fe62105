"""The distributed properties by family: each one's check and the cases it draws for world sizes 2…W, as the tests use them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import strategies as st


@dataclass(frozen=True)
class Property:
    """One property: `check(world, case)` (a RankPool or a launched world), `cases(world_sizes)`, and why it cannot run here."""

    family: str
    name: str
    check: Callable
    cases: Callable[[st.SearchStrategy[int]], st.SearchStrategy]
    unavailable: Callable[[], str | None] = lambda: None


def ddp_family(family: str, cases: Callable) -> list[Property]:
    """DDP's four properties, each drawing from `cases(world, min_k=…)`."""
    from properties.distributed import invariants as I

    return [
        Property(family, "window_gives_full_batch_gradient", I.check_window_gives_full_batch_gradient, cases),
        Property(family, "one_allreduce_per_window", I.check_one_allreduce_per_window, lambda w: cases(w, min_k=2)),
        Property(
            family,
            "gradients_stay_local_inside_no_sync",
            I.check_gradients_stay_local_inside_no_sync,
            lambda w: cases(w, min_k=2),
        ),
        Property(family, "step_matches_full_batch_step", I.check_step_matches_full_batch_step, cases),
    ]


def ddp() -> list[Property]:
    """DDP's four properties on the default options."""
    from properties.distributed import invariants as I

    return ddp_family("ddp", I.window_cases)


def ddp_options() -> list[Property]:
    """The same four under drawn DDP options (a configuration a registered defect hits is left out)."""
    from properties.distributed import invariants as I

    return ddp_family("ddp-options", I.option_cases)


def fsdp2() -> list[Property]:
    """FSDP2's four properties (skipped where torch has no fully_shard)."""
    from properties.distributed import fsdp_invariants as F
    from properties.distributed.fsdp import unavailable_reason

    return [
        Property(
            "fsdp2",
            "window_gives_full_batch_gradient",
            F.check_window_gives_full_batch_gradient,
            F.fsdp_cases,
            unavailable_reason,
        ),
        Property(
            "fsdp2",
            "one_reduce_scatter_per_unit_per_window",
            F.check_one_reduce_scatter_per_unit_per_window,
            lambda w: F.fsdp_cases(w, min_k=2),
            unavailable_reason,
        ),
        Property("fsdp2", "step_matches_full_batch_step", F.check_step_matches_full_batch_step, F.fsdp_cases, unavailable_reason),
        Property(
            "fsdp2",
            "reshard_after_forward_agrees",
            F.check_reshard_after_forward_agrees,
            lambda w: F.fsdp_cases(w, reshard_after_forward=st.just(True), kinds=("mlp",)),
            unavailable_reason,
        ),
    ]


def pipeline() -> list[Property]:
    """The pipeline schedules' five properties (skipped where torch has no torch.distributed.pipelining)."""
    from properties.distributed import pipeline_invariants as P
    from properties.distributed.pipeline import PLACEMENTS, known_schedules, unavailable_reason

    def split(w):
        return P.pipeline_cases(
            world_size=w, schedule=st.sampled_from([s for s in known_schedules() if PLACEMENTS[s].split_backward])
        )

    def any_case(w):
        return P.pipeline_cases(world_size=w)

    return [
        Property(
            "pipeline",
            "every_stage_holds_the_full_batch_gradient",
            P.check_every_stage_holds_the_full_batch_gradient,
            any_case,
            unavailable_reason,
        ),
        Property("pipeline", "split_backward_matches_fused", P.check_split_backward_matches_fused, split, unavailable_reason),
        Property(
            "pipeline",
            "returned_losses_are_the_micro_batch_losses",
            P.check_returned_losses_are_the_micro_batch_losses,
            any_case,
            unavailable_reason,
        ),
        Property(
            "pipeline",
            "outer_steps_give_the_full_batch_gradient",
            P.check_every_stage_holds_the_full_batch_gradient,
            lambda w: P.outer_cases(world_size=w),
            unavailable_reason,
        ),
        Property(
            "pipeline",
            "step_gives_full_batch_step",
            P.check_step_gives_full_batch_step,
            lambda w: st.one_of(any_case(w), P.outer_cases(world_size=w)),
            unavailable_reason,
        ),
    ]


FAMILIES: dict[str, Callable[[], list[Property]]] = {"ddp": ddp, "ddp-options": ddp_options, "fsdp2": fsdp2, "pipeline": pipeline}


def properties(families) -> list[Property]:
    """The properties of `families`, in the order given; an unknown family is a ValueError naming the known ones."""
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown families {unknown}; known: {sorted(FAMILIES)}")
    return [prop for family in families for prop in FAMILIES[family]()]
