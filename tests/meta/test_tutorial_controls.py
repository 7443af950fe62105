"""Negative controls: the tutorial reproductions reject an SGD step that is off and a mean MSE that sums the rows."""

import pytest

from properties.invariants import tutorial as TU
from properties.meta import assert_rejects
from properties.mutants import losses as L
from properties.mutants import optim as M

pytestmark = pytest.mark.meta


@pytest.mark.parametrize("mutant", [M.SGD_LR_DOUBLED, M.SGD_SIGN_FLIPPED], ids=lambda m: m.name)
def test_the_first_loop_reproduction_rejects_an_sgd_step_that_is_off(monkeypatch, mutant):
    mutant.apply(monkeypatch)
    _, message = assert_rejects(TU.check_first_loop_follows_closed_form, seed=TU.SEEDS, dtype=TU.FIRST_LOOP_DTYPES)
    assert "after epoch 0, sample 0" in message


@pytest.mark.parametrize("mutant", [M.SGD_SIGN_FLIPPED, L.MSE_MEAN_SUMS_ROWS], ids=lambda m: m.name)
def test_the_second_loop_reproduction_rejects_a_wrong_step_or_a_mean_that_sums_the_rows(monkeypatch, mutant):
    mutant.apply(monkeypatch)
    assert_rejects(TU.check_second_loop_follows_its_closed_form, seed=TU.SEEDS)
