"""Accumulated micro-batches equal the full batch — when each micro-batch's loss is weighted by its share of the window."""

import torch
from hypothesis import example, given
from hypothesis import strategies as st

from properties import accumulate as A
from properties.case import Case
from properties.invariants import equivalence, tokens
from properties.meta import assert_rejects
from properties.models import ModelSpec


def one_hidden_unit(activation: str, seed: int) -> Case:
    """MLP(1→1→3): three output units' contributions cancel inside the one hidden unit's backward."""
    return Case(ModelSpec("mlp", 1, 3, hidden=1, activation=activation), (1,), torch.float64, seed)


@given(case=equivalence.CASES, how=equivalence.HOWS)
@example(case=one_hidden_unit("gelu", 1709), how=A.SUMS_OVER_COUNT)
@example(case=one_hidden_unit("gelu", 14), how=A.SUMS_OVER_COUNT)
@example(case=one_hidden_unit("tanh", 421), how=A.SUMS_OVER_COUNT)
@example(case=one_hidden_unit("sigmoid", 155), how=A.SUMS_OVER_COUNT)
@example(case=one_hidden_unit("softplus", 426), how=A.SUMS_OVER_COUNT)
def test_micro_batch_means_scaled_by_m_over_n_or_sums_over_the_count_accumulate_to_the_full_batch_gradient(case, how):
    equivalence.check_accumulation_matches_full_batch(case, how)


@given(case=equivalence.WINDOW_CASES, steps=equivalence.STEPS, set_to_none=equivalence.SET_TO_NONE)
def test_window_after_window_accumulation_gives_the_gradients_and_parameters_of_full_batch_sgd_steps(case, steps, set_to_none):
    equivalence.check_windows_match_full_batch_steps(case, steps, set_to_none)


@given(case=equivalence.EQUAL_CASES)
def test_dividing_each_micro_batch_mean_by_k_is_right_when_every_micro_batch_has_the_same_size(case):
    equivalence.check_accumulation_matches_full_batch(case, A.MEANS_OVER_K)


def test_dividing_each_micro_batch_mean_by_k_is_wrong_already_for_micro_batches_of_one_and_two_rows():
    example, message = assert_rejects(
        equivalence.check_accumulation_matches_full_batch, case=equivalence.LINEAR_CASES, how=st.just(A.MEANS_OVER_K), shrink=True
    )
    assert sorted(example["case"].sizes) == [1, 2], f"not shrunk to the split [1, 2]: {example}"
    assert "Σⱼ mean lossⱼ / k" in message and "largest |actual − expected|" in message


@given(case=tokens.CASES)
def test_token_losses_summed_and_divided_by_the_window_token_count_accumulate_to_the_full_batch_gradient(case):
    tokens.check_token_accumulation_matches_full_batch(case, tokens.WINDOW_TOKENS)


@given(case=tokens.EQUAL_COUNT_CASES)
def test_the_mean_of_micro_batch_token_means_is_right_when_every_micro_batch_has_the_same_token_count(case):
    tokens.check_token_accumulation_matches_full_batch(case, tokens.MEAN_OF_MEANS)


def test_the_mean_of_micro_batch_token_means_is_wrong_once_padding_makes_the_token_counts_differ():
    example, message = assert_rejects(
        tokens.check_token_accumulation_matches_full_batch,
        case=tokens.CASES_WITH_TOKENS_EVERYWHERE,
        how=st.just(tokens.MEAN_OF_MEANS),
        shrink=True,
    )
    case = example["case"]
    assert len(case.sizes) == 2 and len(set(case.token_counts())) == 2, f"not shrunk to two micro-batches: {example}"
    assert "non-ignored tokens per micro-batch" in message


@given(case=equivalence.SPARSE_CASES)
def test_sparse_embedding_gradients_accumulated_and_coalesced_equal_the_dense_full_batch_gradient(case):
    equivalence.check_sparse_embedding_gradients_coalesce_to_dense(case)
