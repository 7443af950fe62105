"""Partial and higher-order backward accumulate as documented."""

from hypothesis import given

from properties.invariants import partial_backward


@given(case=partial_backward.CASES, subset=partial_backward.SUBSETS)
def test_backward_with_inputs_accumulates_into_exactly_the_listed_leaves_and_leaves_the_others_untouched(case, subset):
    partial_backward.check_backward_inputs_accumulates_into_exactly_the_listed_leaves(case, subset)


@given(case=partial_backward.CASES, weights=partial_backward.WEIGHTS)
def test_backward_of_several_outputs_with_grad_tensors_sums_their_weighted_gradients(case, weights):
    partial_backward.check_grad_tensors_weight_each_output(case, weights)


@given(case=partial_backward.CASES)
def test_a_retained_non_leaf_grad_accumulates_across_backward_calls_like_a_leaf(case):
    partial_backward.check_retain_grad_accumulates_like_a_leaf(case)


@given(case=partial_backward.CASES)
def test_a_tensor_hook_applies_to_each_backward_calls_contribution_not_to_the_accumulated_grad(case):
    partial_backward.check_a_hook_applies_to_each_contribution(case)


@given(case=partial_backward.LINEAR_CASES)
def test_create_graph_then_a_second_backward_accumulates_the_hessian_vector_product_into_grad(case):
    partial_backward.check_create_graph_accumulates_the_second_order_term(case)
