"""Negative controls: each recipe property rejects a loop, or a torch, broken in the way it guards against."""

import pytest

from properties.meta import assert_rejects
from properties.mutants import recipes as recipe_mutants
from properties.recipes import CORRECT_RECIPE, RecipeOptions, bundled, misbehaving
from properties.recipes.checks import BY_NAME
from properties.recipes.examples import recipe_cases
from properties.recipes.hyperparameters import scaler_supported
from properties.recipes.observation import Observation

pytestmark = pytest.mark.meta

CONTROLS = {
    "runs": (misbehaving.raises_on_a_one_row_micro_batch, {}, "the recipe raised ValueError"),
    "data": (misbehaving.clamps_targets_in_place, {}, "modified in place"),
    "finite": (misbehaving.divides_by_zero, {}, "non-finite parameters"),
    "steps": (bundled.steps_every_micro_batch, {}, "optimizer.step() was called"),
    "leaks": (bundled.never_zeroes, {}, "gradients leak across windows"),
    "scheduler": (bundled.scheduler_every_micro_batch, {"scheduler": True}, "the scheduler's value"),
    "scale": (bundled.scaler_never_updates, {"scaler": True}, "GradScaler's scale"),
    "gradients": (bundled.divides_by_k, {}, "mean-loss gradient of its window"),
    "parameters": (misbehaving.decays_weights_by_hand, {}, "parameter after optimizer step"),
}


def check_of(name: str, recipe):
    """The property `name` as a check of one example, for assert_rejects."""
    return lambda example: BY_NAME[name].check(Observation(recipe, example))


def test_every_recipe_property_has_a_negative_control():
    assert set(CONTROLS) == set(BY_NAME)


@pytest.mark.parametrize("name", list(CONTROLS))
def test_each_recipe_property_rejects_a_loop_that_breaks_it(name):
    recipe, options, words = CONTROLS[name]
    if options.get("scaler") and not scaler_supported():
        pytest.skip("no CPU torch.amp.GradScaler (torch < 2.3)")
    _, message = assert_rejects(check_of(name, recipe), example=recipe_cases(RecipeOptions(**options)))
    assert words in message, message


def test_the_leak_property_rejects_a_loop_whose_last_window_of_an_epoch_reaches_the_next_epoch():
    _, message = assert_rejects(check_of("leaks", bundled.leaves_the_last_window_in_grad), example=recipe_cases())
    assert "at the start of epoch 2" in message


def test_the_step_gradient_property_rejects_row_weights_on_padded_tokens_with_ignored_labels():
    options = RecipeOptions(**bundled.token_options())
    _, message = assert_rejects(check_of("gradients", bundled.weights_by_rows), example=recipe_cases(options))
    assert "Σ|per-row terms|" in message


def test_the_leak_property_rejects_the_correct_loop_on_a_torch_whose_zero_grad_does_nothing(monkeypatch):
    recipe_mutants.OPTIMIZER_ZERO_GRAD_IGNORED.apply(monkeypatch)
    _, message = assert_rejects(check_of("leaks", CORRECT_RECIPE), example=recipe_cases())
    assert "still holding" in message


def test_the_step_gradient_property_rejects_the_correct_loop_on_a_torch_whose_clipping_does_not_clip(monkeypatch):
    recipe_mutants.CLIP_GRAD_NORM_IGNORED.apply(monkeypatch)
    _, message = assert_rejects(check_of("gradients", CORRECT_RECIPE), example=recipe_cases(RecipeOptions(clip_norm=0.1)))
    assert "clipped to max_norm=0.1" in message
