"""Negative controls: each accumulation = full batch property rejects a torch or a procedure broken the way it guards against."""

import pytest
from hypothesis import strategies as st

from properties import accumulate as A
from properties.invariants import equivalence, tokens
from properties.meta import assert_rejects
from properties.mutants import autograd, layers, losses
from properties.strategies import cases, model_specs

pytestmark = pytest.mark.meta
MULTI_OUTPUT = cases(models=model_specs(["linear", "mlp"]).filter(lambda spec: spec.out_features > 1))


@pytest.mark.parametrize("mutant", [losses.MSE_MEAN_SUMS_ROWS, losses.MSE_MEAN_DIVIDES_BY_ONE_MORE], ids=lambda m: m.name)
def test_the_scaled_means_property_rejects_a_mean_mse_that_divides_by_a_count_not_proportional_to_n(monkeypatch, mutant):
    mutant.apply(monkeypatch)
    _, message = assert_rejects(
        equivalence.check_accumulation_matches_full_batch, case=equivalence.CASES, how=st.just(A.SCALED_MEANS)
    )
    assert "(mⱼ/N)·mean lossⱼ" in message


def test_the_sums_over_count_property_rejects_a_mean_mse_that_divides_by_the_rows_only(monkeypatch):
    losses.MSE_MEAN_DIVIDES_BY_ROWS.apply(monkeypatch)
    _, message = assert_rejects(
        equivalence.check_accumulation_matches_full_batch, case=MULTI_OUTPUT, how=st.just(A.SUMS_OVER_COUNT)
    )
    assert "× expected" in message


def test_the_equal_split_property_rejects_a_mean_mse_that_sums_the_rows(monkeypatch):
    losses.MSE_MEAN_SUMS_ROWS.apply(monkeypatch)
    assert_rejects(equivalence.check_accumulation_matches_full_batch, case=equivalence.EQUAL_CASES, how=st.just(A.MEANS_OVER_K))


@pytest.mark.parametrize("how", [A.MEANS_OVER_K, A.UNSCALED_MEANS])
def test_the_scaled_means_property_rejects_the_procedures_that_weight_micro_batches_wrongly(how):
    _, message = assert_rejects(equivalence.check_accumulation_matches_full_batch, case=equivalence.CASES, how=st.just(how))
    assert A.PROCEDURES[how] in message


@pytest.mark.parametrize("mutant", [autograd.ZERO_GRAD_LEAVES_RESIDUE, autograd.BACKWARD_OVERWRITES], ids=lambda m: m.name)
def test_the_windows_property_rejects_a_zero_grad_with_residue_or_a_backward_that_overwrites(monkeypatch, mutant):
    mutant.apply(monkeypatch)
    _, message = assert_rejects(
        equivalence.check_windows_match_full_batch_steps,
        case=equivalence.WINDOW_CASES,
        steps=equivalence.STEPS,
        set_to_none=st.just(False),
    )
    assert "window" in message


def test_the_token_property_rejects_a_cross_entropy_mean_that_counts_ignored_tokens(monkeypatch):
    losses.CROSS_ENTROPY_COUNTS_IGNORED.apply(monkeypatch)
    _, message = assert_rejects(
        tokens.check_token_accumulation_matches_full_batch, case=tokens.CASES, how=st.just(tokens.WINDOW_TOKENS)
    )
    assert "non-ignored tokens" in message


def test_the_sparse_embedding_property_rejects_a_coalesce_that_drops_repeated_indices(monkeypatch):
    layers.COALESCE_KEEPS_FIRST.apply(monkeypatch)
    _, message = assert_rejects(equivalence.check_sparse_embedding_gradients_coalesce_to_dense, case=equivalence.SPARSE_CASES)
    assert "embedding.weight" in message
