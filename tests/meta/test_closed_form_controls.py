"""Negative controls: the closed-form MSE properties reject a mean that divides by the wrong count and a broken Linear backward."""

import pytest

from properties.invariants import closed_form as C
from properties.meta import assert_rejects
from properties.mutants import layers as Y
from properties.mutants import losses as L

pytestmark = pytest.mark.meta
MSE_MUTANTS = [L.MSE_MEAN_DIVIDES_BY_ROWS, L.MSE_MEAN_SUMS_ROWS, L.MSE_MEAN_DIVIDES_BY_ONE_MORE]
LINEAR_MUTANTS = [Y.LINEAR_BACKWARD_TRANSPOSES_WEIGHT_GRAD, Y.LINEAR_BACKWARD_SUMS_BIAS_OVER_OUTPUTS]


@pytest.mark.parametrize("mutant", MSE_MUTANTS, ids=lambda m: m.name)
def test_the_closed_form_property_rejects_a_mean_mse_that_divides_by_the_wrong_count(monkeypatch, mutant):
    mutant.apply(monkeypatch)
    _, message = assert_rejects(C.check_mse_matches_closed_form, case=C.CASES, reduction=C.REDUCTIONS)
    assert "× expected" in message


@pytest.mark.parametrize("mutant", LINEAR_MUTANTS, ids=lambda m: m.name)
def test_the_closed_form_property_rejects_a_linear_backward_that_transposes_or_sums_wrongly(monkeypatch, mutant):
    mutant.apply(monkeypatch)
    _, message = assert_rejects(C.check_mse_matches_closed_form, case=C.CASES, reduction=C.REDUCTIONS)
    assert "'weight'" in message or "'bias'" in message


def test_the_closed_form_property_names_a_transposed_weight_gradient(monkeypatch):
    Y.LINEAR_BACKWARD_TRANSPOSES_WEIGHT_GRAD.apply(monkeypatch)
    example, message = assert_rejects(C.check_mse_matches_closed_form, case=C.CASES, reduction=C.REDUCTIONS, shrink=True)
    assert example["case"].model.in_features == example["case"].model.out_features == 2, example
    assert "actual is expected transposed" in message


@pytest.mark.parametrize("mutant", MSE_MUTANTS + LINEAR_MUTANTS, ids=lambda m: m.name)
def test_the_tutorial_formula_property_rejects_a_broken_mean_or_linear_backward(monkeypatch, mutant):
    mutant.apply(monkeypatch)
    assert_rejects(C.check_tutorial_formulas_match_autograd, case=C.CASES)
