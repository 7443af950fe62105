"""The recipe properties that `pytest --recipe MODULE:FUNCTION` runs: one test per property, each drawing its own examples."""

from __future__ import annotations

import pytest
from hypothesis import Phase, find, given, reject, settings
from hypothesis.errors import NoSuchExample, Unsatisfiable

from properties.recipes.checks import BY_NAME
from properties.recipes.contract import check_contract
from properties.recipes.errors import RecipeError
from properties.recipes.examples import recipe_cases
from properties.recipes.observation import Observation
from properties.recipes.search import error_for, search_settings
from properties.threads import one_thread


def holds(name: str, recipe, options, config) -> None:
    """Property `name` holds for `recipe` on every drawn example; otherwise fail with the shrunk one and its cause."""
    __tracebackhide__ = True
    contract_holds(recipe, options)
    prop = BY_NAME[name]
    if not prop.applies(options):
        pytest.skip(f"{prop.sentence}: only with --recipe-{prop.needs}")

    with one_thread():
        raises_always = name != "runs" and raises_on_every_example(recipe, options)
    if raises_always:
        pytest.skip(f"{prop.sentence}: the recipe raised on every example (see test_the_recipe_runs_without_raising)")

    @search_settings(options)
    @given(example=recipe_cases(options))
    def property_holds(example):
        observation = Observation(recipe, example)
        if name != "runs" and observation.run.error is not None:
            reject()  # test_the_recipe_runs_without_raising reports the exception, once
        try:
            prop.check(observation)
        except AssertionError as error:
            raise error_for(recipe, observation, [(prop, error)], "counterexample (shrunk)") from None

    try:
        with one_thread():
            error = recipe_error(property_holds)
    except Unsatisfiable:
        pytest.skip(f"{prop.sentence}: the recipe raised on every example (see test_the_recipe_runs_without_raising)")
    if error is not None:
        command = f"pytest {' '.join(config.invocation_params.args)}"
        message = f"{error}\n  reproduce: `{command}` draws the same examples again (derandomized)"
        raise pytest.fail.Exception(message, pytrace=False) from error  # the cause keeps the RecipeError's fields


def raises_on_every_example(recipe, options) -> bool:
    """Whether the recipe raises on each of the first max_examples drawn examples (found without waiting out Hypothesis' rejections)."""
    probe = settings(search_settings(options), phases=(Phase.generate,))
    try:
        find(recipe_cases(options), lambda example: Observation(recipe, example).run.error is None, settings=probe)
    except NoSuchExample:
        return True
    return False


def recipe_error(function, *args) -> RecipeError | None:
    """The RecipeError function(*args) raises, or None."""
    try:
        function(*args)
    except RecipeError as error:
        return error
    return None


def contract_holds(recipe, options) -> None:
    """Fail with the contract's message unless the recipe can be called as the options will call it."""
    error = recipe_error(check_contract, recipe, options.extras())
    if error is not None:
        pytest.fail(str(error), pytrace=False)


def test_the_recipe_can_be_called_as_the_contract_says(recipe_under_test, recipe_check_options):
    contract_holds(recipe_under_test, recipe_check_options)


def test_the_recipe_runs_without_raising(recipe_under_test, recipe_check_options, pytestconfig):
    holds("runs", recipe_under_test, recipe_check_options, pytestconfig)


def test_the_recipe_leaves_its_micro_batches_untouched(recipe_under_test, recipe_check_options, pytestconfig):
    holds("data", recipe_under_test, recipe_check_options, pytestconfig)


def test_every_parameter_stays_finite(recipe_under_test, recipe_check_options, pytestconfig):
    holds("finite", recipe_under_test, recipe_check_options, pytestconfig)


def test_one_optimizer_step_comes_at_the_end_of_each_window(recipe_under_test, recipe_check_options, pytestconfig):
    holds("steps", recipe_under_test, recipe_check_options, pytestconfig)


def test_no_gradient_leaks_from_one_window_into_the_next(recipe_under_test, recipe_check_options, pytestconfig):
    holds("leaks", recipe_under_test, recipe_check_options, pytestconfig)


def test_the_scheduler_steps_once_per_optimizer_step(recipe_under_test, recipe_check_options, pytestconfig):
    holds("scheduler", recipe_under_test, recipe_check_options, pytestconfig)


def test_a_non_finite_micro_step_skips_its_whole_window_and_backs_the_scale_off_once(
    recipe_under_test, recipe_check_options, pytestconfig
):
    holds("scale", recipe_under_test, recipe_check_options, pytestconfig)


def test_each_step_uses_the_mean_loss_gradient_of_its_window(recipe_under_test, recipe_check_options, pytestconfig):
    holds("gradients", recipe_under_test, recipe_check_options, pytestconfig)


def test_the_final_parameters_equal_one_full_batch_step_per_window(recipe_under_test, recipe_check_options, pytestconfig):
    holds("parameters", recipe_under_test, recipe_check_options, pytestconfig)
