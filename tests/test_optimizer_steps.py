"""Optimizer steps after accumulation: SGD in closed form, every documented update, and whole trajectories."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from properties.invariants import optimizer_steps


@given(case=optimizer_steps.LINEAR_CASES, lr=optimizer_steps.LRS)
def test_one_sgd_step_after_accumulation_is_theta_minus_lr_times_the_closed_form_gradient(case, lr):
    optimizer_steps.check_one_sgd_step_is_closed_form(case, lr)


@pytest.mark.parametrize("family", optimizer_steps.FAMILY_NAMES)
@given(case=optimizer_steps.DENSE_CASES, steps=optimizer_steps.LONG_STEPS, groups=optimizer_steps.GROUPS, data=st.data())
def test_every_step_of_sgd_with_or_without_momentum_adam_and_adamw_follows_its_documented_update(
    family, case, steps, groups, data
):
    spec = data.draw(optimizer_steps.FAMILIES[family], label="spec")
    optimizer_steps.check_step_follows_documented_update(case, spec, steps, groups=groups)


@given(
    case=optimizer_steps.DENSE_CASES, spec=optimizer_steps.TRAJECTORY_SPECS, steps=optimizer_steps.STEPS, how=optimizer_steps.HOWS
)
def test_t_windows_of_accumulation_give_the_parameters_and_optimizer_state_of_t_full_batch_steps(case, spec, steps, how):
    optimizer_steps.check_accumulated_trajectory_equals_full_batch(case, spec, steps, how)
