"""zero_grad() resets every gradient, by Module and by Optimizer, whichever way it is asked to."""

import pytest
from hypothesis import given

from properties.invariants import zero_grad

OWNER = pytest.mark.parametrize("owner", zero_grad.OWNERS)


@OWNER
@given(case=zero_grad.CASES, groups=zero_grad.GROUPS)
def test_zero_grad_with_set_to_none_true_leaves_every_grad_none(owner, case, groups):
    zero_grad.check_reset_to_none(case, owner, groups)


@OWNER
@given(case=zero_grad.CASES, groups=zero_grad.GROUPS)
def test_zero_grad_with_set_to_none_false_zeroes_every_grad_in_the_same_tensor(owner, case, groups):
    zero_grad.check_reset_to_zeros_in_place(case, owner, groups)


@OWNER
@given(case=zero_grad.CASES, groups=zero_grad.GROUPS)
def test_zero_grad_with_no_argument_does_what_this_torch_version_documents(owner, case, groups):
    zero_grad.check_reset_default_is_documented(case, owner, groups)


@OWNER
@pytest.mark.parametrize("how", list(zero_grad.RESETS))
@given(case=zero_grad.CASES, groups=zero_grad.GROUPS)
def test_a_backward_after_zero_grad_gives_exactly_the_fresh_gradient(owner, how, case, groups):
    zero_grad.check_backward_after_reset_is_fresh(case, owner, groups, how)
