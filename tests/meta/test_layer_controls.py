"""Negative controls: the per-row layer property rejects a LayerNorm that couples the rows of a batch."""

import pytest

from properties.invariants import normalization
from properties.meta import assert_rejects
from properties.mutants import layers

pytestmark = pytest.mark.meta


def test_the_per_row_layer_property_rejects_a_layernorm_over_the_whole_batch(monkeypatch):
    layers.LAYER_NORM_OVER_BATCH.apply(monkeypatch)
    _, message = assert_rejects(
        normalization.check_layer_keeps_accumulation_equal_to_full_batch, case=normalization.LAYERNORM_CASES
    )
    assert "LayerNorm" in message
