"""Negative controls: the closed-form MSE properties reject a mean that divides by the wrong count and a broken Linear backward."""

import pytest

from properties.invariants import closed_form
from properties.meta import assert_rejects
from properties.mutants import layers, losses

pytestmark = pytest.mark.meta
MSE_MUTANTS = [losses.MSE_MEAN_DIVIDES_BY_ROWS, losses.MSE_MEAN_SUMS_ROWS, losses.MSE_MEAN_DIVIDES_BY_ONE_MORE]
LINEAR_MUTANTS = [layers.LINEAR_BACKWARD_TRANSPOSES_WEIGHT_GRAD, layers.LINEAR_BACKWARD_SUMS_BIAS_OVER_OUTPUTS]


@pytest.mark.parametrize("mutant", MSE_MUTANTS, ids=lambda m: m.name)
def test_the_closed_form_property_rejects_a_mean_mse_that_divides_by_the_wrong_count(monkeypatch, mutant):
    mutant.apply(monkeypatch)
    _, message = assert_rejects(
        closed_form.check_mse_matches_closed_form, case=closed_form.CASES, reduction=closed_form.REDUCTIONS
    )
    assert "× expected" in message


@pytest.mark.parametrize("mutant", LINEAR_MUTANTS, ids=lambda m: m.name)
def test_the_closed_form_property_rejects_a_linear_backward_that_transposes_or_sums_wrongly(monkeypatch, mutant):
    mutant.apply(monkeypatch)
    _, message = assert_rejects(
        closed_form.check_mse_matches_closed_form, case=closed_form.CASES, reduction=closed_form.REDUCTIONS
    )
    assert "'weight'" in message or "'bias'" in message


def test_the_closed_form_property_names_a_transposed_weight_gradient(monkeypatch):
    layers.LINEAR_BACKWARD_TRANSPOSES_WEIGHT_GRAD.apply(monkeypatch)
    example, message = assert_rejects(
        closed_form.check_mse_matches_closed_form, case=closed_form.CASES, reduction=closed_form.REDUCTIONS, shrink=True
    )
    assert example["case"].model.in_features == example["case"].model.out_features == 2, example
    assert "actual is expected transposed" in message


@pytest.mark.parametrize("mutant", MSE_MUTANTS + LINEAR_MUTANTS, ids=lambda m: m.name)
def test_the_tutorial_formula_property_rejects_a_broken_mean_or_linear_backward(monkeypatch, mutant):
    mutant.apply(monkeypatch)
    assert_rejects(closed_form.check_tutorial_formulas_match_autograd, case=closed_form.CASES)
