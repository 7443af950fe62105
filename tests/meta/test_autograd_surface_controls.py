"""Negative controls: the torch.func, checkpointing and partial-backward properties reject the faults they guard against."""

import pytest
from hypothesis import strategies as st

from properties import versions
from properties.invariants import checkpointing, compiled, functional, partial_backward
from properties.meta import assert_rejects
from properties.mutants import autograd_surface

pytestmark = pytest.mark.meta


@versions.requires(versions.TORCH_FUNC)
def test_the_per_sample_property_rejects_a_vmap_that_loses_the_last_sample(monkeypatch):
    autograd_surface.VMAP_LOSES_LAST_SAMPLE.apply(monkeypatch)
    _, message = assert_rejects(
        functional.check_per_sample_gradients_sum_to_the_batch_gradient, case=functional.CASES, reduction=functional.REDUCTIONS
    )
    assert "per-sample gradients" in message


def test_the_checkpointing_property_rejects_a_recomputation_that_draws_a_new_dropout_mask(monkeypatch):
    autograd_surface.CHECKPOINT_FORGETS_RNG.apply(monkeypatch)
    _, message = assert_rejects(
        checkpointing.check_checkpointing_keeps_accumulation_unchanged,
        case=checkpointing.CASES,
        use_reentrant=checkpointing.REENTRANT,
        dropout=st.just(True),
    )
    assert "dropout(p=0.5) inside" in message


def test_the_inputs_property_rejects_a_backward_that_ignores_inputs(monkeypatch):
    autograd_surface.BACKWARD_INPUTS_IGNORED.apply(monkeypatch)
    _, message = assert_rejects(
        partial_backward.check_backward_inputs_accumulates_into_exactly_the_listed_leaves,
        case=partial_backward.CASES,
        subset=partial_backward.SUBSETS,
    )
    assert "unlisted leaves untouched" in message


def test_the_grad_tensors_property_rejects_a_backward_that_ignores_the_weights(monkeypatch):
    autograd_surface.GRAD_TENSORS_IGNORED.apply(monkeypatch)
    _, message = assert_rejects(
        partial_backward.check_grad_tensors_weight_each_output, case=partial_backward.CASES, weights=partial_backward.WEIGHTS
    )
    assert "grad_tensors=" in message


def test_the_retain_grad_property_rejects_a_retained_grad_that_is_overwritten(monkeypatch):
    autograd_surface.RETAIN_GRAD_OVERWRITES.apply(monkeypatch)
    _, message = assert_rejects(partial_backward.check_retain_grad_accumulates_like_a_leaf, case=partial_backward.CASES)
    assert "retained .grad" in message


def test_the_hook_property_rejects_a_hook_applied_twice(monkeypatch):
    autograd_surface.HOOK_APPLIED_TWICE.apply(monkeypatch)
    _, message = assert_rejects(partial_backward.check_a_hook_applies_to_each_contribution, case=partial_backward.CASES)
    assert "hook" in message


def test_the_second_order_property_rejects_a_backward_that_drops_create_graph(monkeypatch):
    autograd_surface.CREATE_GRAPH_DROPPED.apply(monkeypatch)
    _, message = assert_rejects(
        partial_backward.check_create_graph_accumulates_the_second_order_term, case=partial_backward.LINEAR_CASES
    )
    assert "carries no graph" in message


@versions.requires_compile()
def test_the_compiled_model_property_rejects_a_compiled_graph_that_drifts(monkeypatch):
    autograd_surface.COMPILED_GRAPH_DRIFTS.apply(monkeypatch)
    _, message = assert_rejects(
        compiled.check_compiled_model_accumulates_like_eager, case=compiled.CASES, backend=compiled.BACKENDS
    )
    assert "torch.compile(backend='aot_eager')" in message
