"""Beyond plain SGD: clip once after accumulating, one scheduler step per optimizer step, GradScaler skips a whole window."""

import pytest
from hypothesis import given, settings

from properties.recipes import BUGGY_RECIPES, CORRECT_RECIPE, RecipeError, RecipeOptions, check_recipe
from properties.recipes.examples import recipe_cases
from properties.recipes.hyperparameters import scaler_supported
from properties.recipes.search import check_example

BUGS = {bug.name: bug for bug in BUGGY_RECIPES}
NEEDS_SCALER = pytest.mark.skipif(not scaler_supported(), reason="no CPU torch.amp.GradScaler (torch < 2.3)")


def assert_rejected_with_cause(name: str) -> None:
    """check_recipe rejects the bundled wrong loop `name` under its options, naming its cause."""
    bug = BUGS[name]
    with pytest.raises(RecipeError) as raised:
        check_recipe(bug.recipe, **bug.options)
    assert any(bug.cause in cause for cause in raised.value.causes), str(raised.value)
    assert len(raised.value.example.case.sizes) <= 2, f"not shrunk: {raised.value.example!r}"


@given(example=recipe_cases(RecipeOptions(clip_norm=0.1)))
def test_clipping_once_after_accumulating_equals_clipping_the_full_batch_gradient(example):
    check_example(CORRECT_RECIPE, example)


def test_clipping_at_every_micro_step_does_not():
    assert_rejected_with_cause("clips_every_micro_step")


@given(example=recipe_cases(RecipeOptions(scheduler=True)))
def test_the_scheduler_steps_once_per_optimizer_step(example):
    check_example(CORRECT_RECIPE, example)


def test_a_scheduler_stepped_every_micro_batch_is_rejected():
    assert_rejected_with_cause("scheduler_every_micro_batch")


@NEEDS_SCALER
@given(example=recipe_cases(RecipeOptions(scaler=True)))
def test_an_inf_in_any_micro_step_skips_the_whole_window_and_backs_the_scale_off_once(example):
    check_example(CORRECT_RECIPE, example)


@NEEDS_SCALER
@pytest.mark.parametrize("name", ["scaler_zeroes_non_finite_gradients", "scaler_never_updates"])
def test_a_scaler_loop_that_steps_a_non_finite_window_or_never_backs_off_is_rejected(name):
    assert_rejected_with_cause(name)


@NEEDS_SCALER
def test_clipping_a_scheduler_and_a_scaler_together_still_equal_full_batch_steps():
    check_recipe(CORRECT_RECIPE, clip_norm=0.5, scheduler=True, scaler=True, max_examples=settings.default.max_examples)
