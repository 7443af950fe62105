"""backward() sums gradients into .grad, whatever the model and however many calls."""

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from properties import versions
from properties.case import Case
from properties.devices import device_params
from properties.invariants import backward
from properties.models import ModelSpec
from properties.strategies import model_specs


@pytest.mark.parametrize("device", device_params())
@given(data=st.data(), via=backward.VIAS)
def test_n_backward_calls_sum_the_n_individual_gradients(device, data, via):
    backward.check_backward_sums(data.draw(backward.sum_cases(device), label="case"), via)


def sparse_bag(seed: int) -> Case:
    """EmbeddingSum(2×3, bag 3, sparse), one row: .grad holds 6 uncoalesced entries for one row after two backward calls."""
    return Case(ModelSpec("embedding", 2, 3, sparse=True, bag=3), (1,), torch.float64, seed)


@given(case=backward.ONE_GRAPH_CASES)
@example(case=sparse_bag(726))
@example(case=sparse_bag(6296))
@example(case=sparse_bag(98))
def test_backward_twice_on_a_retained_graph_gives_twice_the_gradient(case):
    backward.check_retained_graph_backward_twice_doubles(case)


@given(case=backward.TIED_CASES)
def test_a_tied_parameter_gets_the_sum_of_the_gradients_of_its_uses(case):
    backward.check_tied_parameter_gets_sum_of_uses(case)


@given(case=backward.FROZEN_CASES)
def test_frozen_parameters_and_non_leaf_tensors_get_no_grad(case):
    backward.check_frozen_and_non_leaf_get_no_grad(case)


@given(case=backward.ANY_CASES)
def test_autograd_grad_returns_the_gradient_and_leaves_every_grad_untouched(case):
    backward.check_autograd_grad_leaves_grad_untouched(case)


@versions.requires(versions.POST_ACCUMULATE_GRAD_HOOK)
@given(case=backward.HOOK_CASES)
def test_a_post_accumulate_grad_hook_fires_once_per_backward(case):
    backward.check_post_accumulate_grad_hook_fires_once_per_backward(case)


@given(spec=model_specs(bias=st.booleans()))
def test_a_model_spec_names_the_parameters_its_module_has(spec):
    module = spec.build(dtype=torch.float64, device="cpu", seed=0)
    assert spec.parameter_names() == [name for name, _ in module.named_parameters()]
