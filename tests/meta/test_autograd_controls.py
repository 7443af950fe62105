"""Negative controls: each backward and zero_grad property rejects a torch broken in the way it guards against."""

import pytest
from hypothesis import strategies as st

from properties import versions
from properties.invariants import backward, zero_grad
from properties.meta import assert_rejects
from properties.mutants import autograd

pytestmark = pytest.mark.meta
OWNERS = st.sampled_from(zero_grad.OWNERS)


@pytest.mark.parametrize("mutant", [autograd.BACKWARD_OVERWRITES, autograd.BACKWARD_DROPS_LATER_CALLS], ids=lambda m: m.name)
def test_the_sum_property_rejects_a_backward_that_does_not_add(monkeypatch, mutant):
    mutant.apply(monkeypatch)
    example, message = assert_rejects(backward.check_backward_sums, case=backward.sum_cases(), via=backward.VIAS, shrink=True)
    assert example["case"].sizes == (1, 1), f"not shrunk to two calls of one row: {example}"
    assert "sum of the 2 gradients" in message and "largest |actual − expected|" in message


@pytest.mark.parametrize("mutant", [autograd.BACKWARD_OVERWRITES, autograd.BACKWARD_DROPS_LATER_CALLS], ids=lambda m: m.name)
def test_the_retained_graph_property_rejects_a_backward_that_does_not_add(monkeypatch, mutant):
    mutant.apply(monkeypatch)
    _, message = assert_rejects(backward.check_retained_graph_backward_twice_doubles, case=backward.ONE_GRAPH_CASES)
    assert "0.5 × expected" in message


def test_the_tied_property_rejects_a_tie_lost_to_a_copy():
    example, message = assert_rejects(
        lambda case: backward.check_tied_parameter_gets_sum_of_uses(case, build=backward.broken_tie), case=backward.TIED_CASES
    )
    assert "shared.weight" in message or "shared.bias" in message


@pytest.mark.parametrize("mutant", [autograd.FREEZING_IGNORED, autograd.NON_LEAF_RETAINS_GRAD], ids=lambda m: m.name)
def test_the_no_grad_property_rejects_frozen_or_non_leaf_tensors_that_get_a_grad(monkeypatch, mutant):
    mutant.apply(monkeypatch)
    _, message = assert_rejects(backward.check_frozen_and_non_leaf_get_no_grad, case=backward.FROZEN_CASES)
    assert "expected None" in message


def test_the_autograd_grad_property_rejects_an_autograd_grad_that_touches_grad(monkeypatch):
    autograd.AUTOGRAD_GRAD_ACCUMULATES.apply(monkeypatch)
    assert_rejects(backward.check_autograd_grad_leaves_grad_untouched, case=backward.ANY_CASES)


@versions.requires(versions.POST_ACCUMULATE_GRAD_HOOK)
def test_the_hook_property_rejects_a_hook_that_fires_twice(monkeypatch):
    autograd.HOOK_FIRES_TWICE.apply(monkeypatch)
    _, message = assert_rejects(backward.check_post_accumulate_grad_hook_fires_once_per_backward, case=backward.HOOK_CASES)
    assert "fired" in message


@pytest.mark.parametrize(
    "mutant", [autograd.ZERO_GRAD_SKIPS_LAST_PARAMETER, autograd.ZERO_GRAD_IGNORES_SET_TO_NONE], ids=lambda m: m.name
)
def test_the_set_to_none_property_rejects_a_zero_grad_that_leaves_a_tensor(monkeypatch, mutant):
    mutant.apply(monkeypatch)
    _, message = assert_rejects(
        zero_grad.check_reset_to_none, case=zero_grad.CASES, owner=st.just("module"), groups=zero_grad.GROUPS
    )
    assert "should be None" in message


def test_the_set_to_none_property_rejects_an_optimizer_zero_grad_that_skips_a_group(monkeypatch):
    autograd.ZERO_GRAD_SKIPS_LAST_GROUP.apply(monkeypatch)
    assert_rejects(zero_grad.check_reset_to_none, case=zero_grad.CASES, owner=st.just("optimizer"), groups=zero_grad.GROUPS)


@pytest.mark.parametrize(
    "mutant",
    [autograd.ZERO_GRAD_REPLACES_TENSOR, autograd.ZERO_GRAD_LEAVES_RESIDUE, autograd.ZERO_GRAD_SKIPS_LAST_PARAMETER],
    ids=lambda m: m.name,
)
def test_the_in_place_property_rejects_a_zero_grad_that_replaces_skips_or_leaves_residue(monkeypatch, mutant):
    mutant.apply(monkeypatch)
    assert_rejects(zero_grad.check_reset_to_zeros_in_place, case=zero_grad.CASES, owner=OWNERS, groups=zero_grad.GROUPS)


@pytest.mark.skipif(not versions.ZERO_GRAD_DEFAULT_SET_TO_NONE.expected(), reason="torch < 2.0 documents zeros")
def test_the_default_property_rejects_a_zero_grad_with_the_old_default(monkeypatch):
    autograd.ZERO_GRAD_OLD_DEFAULT.apply(monkeypatch)
    _, message = assert_rejects(
        zero_grad.check_reset_default_is_documented, case=zero_grad.CASES, owner=OWNERS, groups=zero_grad.GROUPS
    )
    assert "documents set_to_none=True" in message


@pytest.mark.parametrize(
    "mutant", [autograd.ZERO_GRAD_LEAVES_RESIDUE, autograd.ZERO_GRAD_SKIPS_LAST_PARAMETER], ids=lambda m: m.name
)
def test_the_fresh_gradient_property_rejects_a_zero_grad_that_leaves_residue(monkeypatch, mutant):
    mutant.apply(monkeypatch)
    _, message = assert_rejects(
        zero_grad.check_backward_after_reset_is_fresh,
        case=zero_grad.CASES,
        owner=st.just("module"),
        groups=zero_grad.GROUPS,
        how=st.just("set_to_none=False"),
    )
    assert "no residue" in message
