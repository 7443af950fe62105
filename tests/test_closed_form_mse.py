"""nn.MSELoss on nn.Linear: the loss and its gradients are the closed forms, the tutorial's formulas included."""

from hypothesis import given
from hypothesis import strategies as st

from properties.invariants import closed_form
from properties.meta import assert_rejects


@given(case=closed_form.CASES, reduction=closed_form.REDUCTIONS)
def test_mse_loss_and_its_weight_and_bias_gradients_equal_their_closed_forms(case, reduction):
    closed_form.check_mse_matches_closed_form(case, reduction)


@given(case=closed_form.SQUARE_OR_MULTI_OUTPUT, reduction=closed_form.REDUCTIONS)
def test_the_closed_forms_hold_for_square_weights_and_several_outputs(case, reduction):
    closed_form.check_mse_matches_closed_form(case, reduction)


@given(case=closed_form.CASES)
def test_the_tutorial_micro_batch_formulas_over_d_out_and_their_sum_over_k_micro_batches_match_autograd(case):
    closed_form.check_tutorial_formulas_match_autograd(case)


def test_the_tutorial_formula_as_written_is_d_out_times_the_mse_loss_gradient():
    example, message = assert_rejects(
        closed_form.check_tutorial_formulas_match_autograd, case=closed_form.CASES, per_output=st.just(False), shrink=True
    )
    assert example["case"].model.out_features == 2, f"not shrunk to two outputs: {example}"
    assert "actual ≈ 0.5 × expected" in message
