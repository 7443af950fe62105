"""Negative controls: the precision bound rejects a torch whose float32 accumulation loses precision."""

import pytest

from properties.invariants import precision
from properties.meta import assert_rejects
from properties.mutants import precision as precision_mutants

pytestmark = pytest.mark.meta


@pytest.mark.parametrize("mutant", precision_mutants.MUTANTS, ids=lambda m: m.name)
def test_the_precision_bound_rejects_float32_accumulation_that_loses_precision(monkeypatch, mutant):
    mutant.apply(monkeypatch)
    example, message = assert_rejects(
        precision.check_accumulated_gradient_within_rounding_bound, case=precision.FLOAT32_CASES, shrink=True
    )
    assert len(example["case"].sizes) == 2, f"not shrunk to two micro-batches: {example}"
    assert "float32 eps 1.19e-07" in message
