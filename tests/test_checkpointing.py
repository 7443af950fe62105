"""Activation checkpointing keeps accumulation unchanged, with either implementation and with dropout inside."""

from hypothesis import given

from properties.invariants import checkpointing


@given(case=checkpointing.CASES, use_reentrant=checkpointing.REENTRANT, dropout=checkpointing.DROPOUT)
def test_micro_batches_accumulated_through_a_checkpointed_segment_give_the_gradient_of_the_plain_model(
    case, use_reentrant, dropout
):
    checkpointing.check_checkpointing_keeps_accumulation_unchanged(case, use_reentrant, dropout)
