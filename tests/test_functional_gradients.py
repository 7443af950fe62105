"""torch.func accumulates like autograd: per-sample gradients sum to the batch gradient, func.grad buffers equal .grad."""

from hypothesis import given

from properties import versions
from properties.invariants import functional

pytestmark = versions.requires(versions.TORCH_FUNC)


@given(case=functional.CASES, reduction=functional.REDUCTIONS)
def test_per_sample_gradients_from_vmap_of_grad_sum_to_the_batch_gradient_and_over_n_to_the_mean_loss_gradient(case, reduction):
    functional.check_per_sample_gradients_sum_to_the_batch_gradient(case, reduction)


@given(case=functional.CASES)
def test_func_grad_of_each_weighted_micro_batch_summed_in_a_buffer_equals_grad_accumulation(case):
    functional.check_func_grad_buffer_accumulates_like_grad(case)


@given(case=functional.CASES)
def test_backward_through_functional_call_with_other_parameters_leaves_the_modules_grad_alone(case):
    functional.check_functional_call_leaves_the_modules_grad_alone(case)
