"""Negative controls: each accumulation = full batch property rejects a torch or a procedure broken the way it guards against."""

import pytest
from hypothesis import strategies as st

from properties import accumulate as A
from properties.invariants import equivalence as E
from properties.invariants import tokens as T
from properties.meta import assert_rejects
from properties.mutants import autograd as AM
from properties.mutants import layers as Y
from properties.mutants import losses as L
from properties.strategies import cases, model_specs

pytestmark = pytest.mark.meta
MULTI_OUTPUT = cases(models=model_specs(["linear", "mlp"]).filter(lambda spec: spec.out_features > 1))


@pytest.mark.parametrize("mutant", [L.MSE_MEAN_SUMS_ROWS, L.MSE_MEAN_DIVIDES_BY_ONE_MORE], ids=lambda m: m.name)
def test_the_scaled_means_property_rejects_a_mean_mse_that_divides_by_a_count_not_proportional_to_n(monkeypatch, mutant):
    mutant.apply(monkeypatch)
    _, message = assert_rejects(E.check_accumulation_matches_full_batch, case=E.CASES, how=st.just(A.SCALED_MEANS))
    assert "(mⱼ/N)·mean lossⱼ" in message


def test_the_sums_over_count_property_rejects_a_mean_mse_that_divides_by_the_rows_only(monkeypatch):
    L.MSE_MEAN_DIVIDES_BY_ROWS.apply(monkeypatch)
    _, message = assert_rejects(E.check_accumulation_matches_full_batch, case=MULTI_OUTPUT, how=st.just(A.SUMS_OVER_COUNT))
    assert "× expected" in message


def test_the_equal_split_property_rejects_a_mean_mse_that_sums_the_rows(monkeypatch):
    L.MSE_MEAN_SUMS_ROWS.apply(monkeypatch)
    assert_rejects(E.check_accumulation_matches_full_batch, case=E.EQUAL_CASES, how=st.just(A.MEANS_OVER_K))


@pytest.mark.parametrize("how", [A.MEANS_OVER_K, A.UNSCALED_MEANS])
def test_the_scaled_means_property_rejects_the_procedures_that_weight_micro_batches_wrongly(how):
    _, message = assert_rejects(E.check_accumulation_matches_full_batch, case=E.CASES, how=st.just(how))
    assert A.PROCEDURES[how] in message


@pytest.mark.parametrize("mutant", [AM.ZERO_GRAD_LEAVES_RESIDUE, AM.BACKWARD_OVERWRITES], ids=lambda m: m.name)
def test_the_windows_property_rejects_a_zero_grad_with_residue_or_a_backward_that_overwrites(monkeypatch, mutant):
    mutant.apply(monkeypatch)
    _, message = assert_rejects(
        E.check_windows_match_full_batch_steps, case=E.WINDOW_CASES, steps=E.STEPS, set_to_none=st.just(False)
    )
    assert "window" in message


def test_the_token_property_rejects_a_cross_entropy_mean_that_counts_ignored_tokens(monkeypatch):
    L.CROSS_ENTROPY_COUNTS_IGNORED.apply(monkeypatch)
    _, message = assert_rejects(T.check_token_accumulation_matches_full_batch, case=T.CASES, how=st.just(T.WINDOW_TOKENS))
    assert "non-ignored tokens" in message


def test_the_sparse_embedding_property_rejects_a_coalesce_that_drops_repeated_indices(monkeypatch):
    Y.COALESCE_KEEPS_FIRST.apply(monkeypatch)
    _, message = assert_rejects(E.check_sparse_embedding_gradients_coalesce_to_dense, case=E.SPARSE_CASES)
    assert "embedding.weight" in message
