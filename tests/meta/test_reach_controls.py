"""Negative controls where small examples never go: each property rejects a defect that shows only past a size,
on a long parameter list, on a strided layout or late in a run, and shrinks it to about the size it needs."""

import re

import pytest
from hypothesis import strategies as st

from properties.invariants import equivalence, optimizer_steps, zero_grad
from properties.meta import assert_rejects
from properties.mutants import reach
from properties.optimizers import FAMILIES
from properties.strategies import cases, model_specs

pytestmark = pytest.mark.meta


def test_the_full_batch_property_rejects_an_accumulation_that_drops_the_last_block_of_a_big_gradient(monkeypatch):
    reach.ACCUMULATION_DROPS_LAST_BLOCK.apply(monkeypatch)
    linear = cases(models=model_specs(["linear"], bias=False, layouts=["contiguous"]))
    example, message = assert_rejects(equivalence.check_accumulation_matches_full_batch, case=linear, shrink=True)
    largest = example["case"].model.largest_tensor
    assert reach.VECTOR_BLOCK < largest <= 2 * reach.VECTOR_BLOCK, f"not shrunk to about {reach.VECTOR_BLOCK} elements: {example}"
    assert "differs" in message


def test_the_full_batch_property_rejects_an_accumulation_that_ignores_a_transposed_or_channels_last_layout(monkeypatch):
    reach.STRIDED_ACCUMULATION.apply(monkeypatch)
    strided = cases(models=model_specs(["linear", "conv"], layouts=["transposed", "channels_last"]))
    example, _ = assert_rejects(equivalence.check_accumulation_matches_full_batch, case=strided, shrink=True)
    assert example["case"].model.layout in ("transposed", "channels_last"), example


def test_the_reset_property_rejects_a_zero_grad_that_drops_the_last_chunk_of_a_long_parameter_list(monkeypatch):
    reach.ZERO_GRAD_FIRST_CHUNK.apply(monkeypatch)
    deep = cases(models=model_specs(["deep"], frozen=st.booleans()))
    example, message = assert_rejects(
        zero_grad.check_reset_to_none, case=deep, owner=st.sampled_from(zero_grad.OWNERS), groups=zero_grad.GROUPS, shrink=True
    )
    assert len(example["case"].model.parameter_names()) > reach.LIST_CHUNK, example
    assert "should be None" in message


def test_the_documented_update_property_rejects_a_step_that_drops_the_last_chunk_of_a_long_parameter_list(monkeypatch):
    reach.STEP_FIRST_CHUNK.apply(monkeypatch)
    example, message = assert_rejects(
        optimizer_steps.check_step_follows_documented_update,
        case=cases(models=model_specs(["deep"], sparse=False)),
        spec=FAMILIES["SGD"],
        steps=optimizer_steps.LONG_STEPS,
        shrink=True,
    )
    assert len(example["case"].model.parameter_names()) > reach.LIST_CHUNK, example
    (layer,) = re.findall(r"parameter 'layers\.(\d+)\.", message)
    assert int(layer) >= reach.LIST_CHUNK // 2, message  # a tensor past the 16th: layer 8 or later


def test_the_documented_update_property_rejects_a_bias_correction_that_stops_counting(monkeypatch):
    reach.ADAM_CORRECTION_STOPS.apply(monkeypatch)
    example, message = assert_rejects(
        optimizer_steps.check_step_follows_documented_update,
        case=optimizer_steps.DENSE_CASES,
        spec=FAMILIES["Adam"],
        steps=optimizer_steps.LONG_STEPS,
        shrink=True,
    )
    assert example["steps"] == reach.WRAPPED_STEP + 1, example
    assert f"after step {reach.WRAPPED_STEP + 1}" in message


def test_the_full_batch_property_rejects_a_mean_that_drops_rows_past_the_last_block(monkeypatch):
    reach.MEAN_OVER_WHOLE_BLOCKS.apply(monkeypatch)
    example, _ = assert_rejects(equivalence.check_accumulation_matches_full_batch, case=equivalence.CASES, shrink=True)
    assert example["case"].rows > reach.ROW_BLOCK, example
