"""Negative controls: the optimizer properties reject an update that is off, and accumulation that weights micro-batches wrongly."""

import pytest
from hypothesis import strategies as st

from properties import accumulate as A
from properties.invariants import optimizer_steps
from properties.meta import assert_rejects
from properties.mutants import optim
from properties.optimizers import adam_specs, sgd_specs

pytestmark = pytest.mark.meta
SPECS_FOR = {
    optim.SGD_SIGN_FLIPPED: sgd_specs(),
    optim.SGD_LR_DOUBLED: sgd_specs(),
    optim.SGD_DAMPENING_IGNORED: sgd_specs(momentum=True),
    optim.SGD_NESTEROV_IGNORED: sgd_specs(momentum=True),
    optim.SGD_WEIGHT_DECAY_IGNORED: sgd_specs(),
    optim.ADAM_WITHOUT_BIAS_CORRECTION: adam_specs("Adam"),
    optim.ADAMW_COUPLED_WEIGHT_DECAY: adam_specs("AdamW"),
}


@pytest.mark.parametrize("mutant", [optim.SGD_SIGN_FLIPPED, optim.SGD_LR_DOUBLED], ids=lambda m: m.name)
def test_the_one_sgd_step_property_rejects_a_step_with_the_wrong_sign_or_lr(monkeypatch, mutant):
    mutant.apply(monkeypatch)
    _, message = assert_rejects(
        optimizer_steps.check_one_sgd_step_is_closed_form, case=optimizer_steps.LINEAR_CASES, lr=optimizer_steps.LRS
    )
    assert "after one SGD" in message


@pytest.mark.parametrize("mutant", list(SPECS_FOR), ids=lambda m: m.name)
def test_the_documented_update_property_rejects_every_broken_update(monkeypatch, mutant):
    mutant.apply(monkeypatch)
    _, message = assert_rejects(
        optimizer_steps.check_step_follows_documented_update,
        case=optimizer_steps.DENSE_CASES,
        spec=SPECS_FOR[mutant],
        steps=optimizer_steps.STEPS,
    )
    assert "documented update" in message


@pytest.mark.parametrize("how", [A.MEANS_OVER_K, A.UNSCALED_MEANS])
def test_the_trajectory_property_rejects_accumulation_that_weights_micro_batches_wrongly(how):
    _, message = assert_rejects(
        optimizer_steps.check_accumulated_trajectory_equals_full_batch,
        case=optimizer_steps.DENSE_CASES,
        spec=optimizer_steps.TRAJECTORY_SPECS,
        steps=optimizer_steps.STEPS,
        how=st.just(how),
    )
    assert A.PROCEDURES[how] in message


def test_the_trajectory_property_rejects_a_zero_grad_that_clears_the_optimizer_state(monkeypatch):
    optim.ZERO_GRAD_CLEARS_STATE.apply(monkeypatch)
    _, message = assert_rejects(
        optimizer_steps.check_accumulated_trajectory_equals_full_batch,
        case=optimizer_steps.DENSE_CASES,
        spec=optimizer_steps.TRAJECTORY_SPECS,
        steps=optimizer_steps.STEPS,
        how=optimizer_steps.HOWS,
    )
    assert "replayed" in message
