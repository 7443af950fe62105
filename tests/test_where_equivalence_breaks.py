"""Where accumulation = full batch holds (per-row layers) and where it cannot (layers that couple rows or draw per call)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from properties.invariants import normalization
from properties.meta import assert_rejects


@pytest.mark.parametrize("layer", normalization.KEEPS)
@given(data=st.data())
def test_batchnorm_in_eval_mode_layernorm_groupnorm_and_eval_dropout_keep_accumulation_equal_to_the_full_batch(layer, data):
    normalization.check_layer_keeps_accumulation_equal_to_full_batch(data.draw(normalization.KEEPING_CASES[layer], label="case"))


def test_batchnorm_in_train_mode_breaks_equivalence_already_for_two_micro_batches_of_two_rows():
    """Each micro-batch is normalised by its own mean and variance, not the window's."""
    example, message = assert_rejects(
        normalization.check_layer_keeps_accumulation_equal_to_full_batch, case=normalization.BATCHNORM_TRAIN_CASES, shrink=True
    )
    assert example["case"].sizes == (2, 2), f"not shrunk to [2, 2]: {example}"
    assert "train mode" in message


def test_dropout_in_train_mode_breaks_equivalence_already_for_two_micro_batches_of_one_row():
    """Each forward call draws its own mask, so the micro-batches are not dropped as the full batch is."""
    example, message = assert_rejects(
        normalization.check_layer_keeps_accumulation_equal_to_full_batch, case=normalization.DROPOUT_TRAIN_CASES, shrink=True
    )
    assert example["case"].sizes == (1, 1), f"not shrunk to [1, 1]: {example}"
    assert "Dropout(p=0.5), train mode" in message
