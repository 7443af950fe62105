"""Negative controls: the tutorial reproductions reject an SGD step that is off and a mean MSE that sums the rows."""

import pytest

from properties.invariants import tutorial
from properties.meta import assert_rejects
from properties.mutants import losses, optim

pytestmark = pytest.mark.meta


@pytest.mark.parametrize("mutant", [optim.SGD_LR_DOUBLED, optim.SGD_SIGN_FLIPPED], ids=lambda m: m.name)
def test_the_first_loop_reproduction_rejects_an_sgd_step_that_is_off(monkeypatch, mutant):
    mutant.apply(monkeypatch)
    _, message = assert_rejects(
        tutorial.check_first_loop_follows_closed_form, seed=tutorial.SEEDS, dtype=tutorial.FIRST_LOOP_DTYPES
    )
    assert "after epoch 0, sample 0" in message


@pytest.mark.parametrize("mutant", [optim.SGD_SIGN_FLIPPED, losses.MSE_MEAN_SUMS_ROWS], ids=lambda m: m.name)
def test_the_second_loop_reproduction_rejects_a_wrong_step_or_a_mean_that_sums_the_rows(monkeypatch, mutant):
    mutant.apply(monkeypatch)
    assert_rejects(tutorial.check_second_loop_follows_its_closed_form, seed=tutorial.SEEDS)
