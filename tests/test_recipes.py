"""check_recipe: the correct loop passes every recipe property; each wrong or misbehaving loop fails, shrunk, with its cause."""

import itertools

import pytest
import torch
from hypothesis import given, settings

from properties import versions
from properties.case import Case
from properties.models import ModelSpec
from properties.recipes import BUGGY_RECIPES, CORRECT_RECIPE, RecipeContractError, RecipeError, check_recipe
from properties.recipes.bundled import accumulate, drops_last_window, steps_every_micro_batch
from properties.recipes.examples import RecipeCase, recipe_cases
from properties.recipes.hyperparameters import OptimizerChoice, scaler_supported
from properties.recipes.misbehaving import MISBEHAVING, takes_four_arguments
from properties.recipes.search import check_example
from properties.tutorial import tutorial_second_loop

CORE_BUGS = [bug for bug in BUGGY_RECIPES if not bug.options]


@given(example=recipe_cases())
def test_the_correct_loop_satisfies_every_recipe_property(example):
    check_example(CORRECT_RECIPE, example)


DIVERGING = {
    "float64 run to NaN": RecipeCase(
        Case(ModelSpec("mlp", 3, 1, hidden=1, activation="leaky_relu"), (3,) * 7, torch.float64, 3),
        1,
        OptimizerChoice("SGD+momentum"),
        epochs=3,
    ),
    "float32 run to inf": RecipeCase(
        Case(ModelSpec("mlp", 3, 1, hidden=2, activation="gelu", bias=False), (1, 2, 2, 3), torch.float32, 16118),
        1,
        OptimizerChoice("SGD+momentum"),
        epochs=3,
    ),
    "9 momentum steps under GradScaler": RecipeCase(
        Case(ModelSpec("tied", 1, 1, activation="gelu"), (3, 2, 2, 3, 2, 2, 2), torch.float64, 7580),
        3,
        OptimizerChoice("SGD+momentum"),
        scaler=True,
        epochs=3,
    ),
}


@pytest.mark.parametrize("example", DIVERGING.values(), ids=DIVERGING.keys())
def test_the_correct_loop_passes_where_training_diverges_or_drifts_from_a_separate_full_batch_run(example):
    if example.scaler and not scaler_supported():
        pytest.skip("no CPU torch.amp.GradScaler (torch < 2.3)")
    check_example(CORRECT_RECIPE, example)


def test_check_recipe_passes_the_correct_loop_and_reports_what_it_checked():
    report = check_recipe(CORRECT_RECIPE, max_examples=3)
    assert report.examples == 3
    assert "the final parameters equal one full-batch step per window" in report.properties
    assert str(report).startswith("properties.recipes.bundled.accumulate passed 7 properties")


def test_a_loop_that_drops_the_short_last_window_passes_when_that_is_the_policy():
    check_recipe(drops_last_window, last_window="drop", max_examples=settings.default.max_examples)


def test_the_correct_loop_fails_when_the_policy_drops_the_short_last_window():
    example = RecipeCase(Case(ModelSpec("linear", 1, 1), (1, 2, 1)), 2, OptimizerChoice("SGD"), last_window="drop")
    with pytest.raises(RecipeError, match="stepped although last_window='drop'"):
        check_example(CORRECT_RECIPE, example)


@pytest.mark.parametrize("bug", CORE_BUGS, ids=repr)
def test_check_recipe_rejects_each_common_wrong_loop_with_a_shrunk_counterexample_and_its_cause(bug):
    with pytest.raises(RecipeError) as raised:
        check_recipe(bug.recipe, **bug.options)
    error, message = raised.value, str(raised.value)
    assert bug.cause in message and any(bug.cause in cause for cause in error.causes), message
    example = error.example
    assert len(example.case.sizes) <= 2 and set(example.case.sizes) == {1} and example.k <= 2, f"not shrunk: {example!r}"
    assert example.case.seed == 0 and repr(example.case.model) in ("Linear(1→1, no bias)", "Linear(1→1)"), message
    assert message.splitlines()[1].startswith("  counterexample (shrunk): Linear(1→1"), message
    assert "reproduce: check_recipe(" in message
    with pytest.raises(RecipeError) as replayed:
        check_example(bug.recipe, example)
    assert replayed.value.property == error.property


def test_shrink_false_reports_the_first_failing_example_as_drawn_and_says_so():
    bug = CORE_BUGS[0]
    with pytest.raises(RecipeError) as raised:
        check_recipe(bug.recipe, **{**bug.options, "shrink": False})
    message = str(raised.value)
    assert message.splitlines()[1].startswith("  counterexample (as drawn: shrink=False): "), message
    assert "shrink=False)" in message.split("reproduce: ", 1)[1], message
    with pytest.raises(RecipeError):
        check_example(bug.recipe, raised.value.example)


@pytest.mark.parametrize("misbehaving", MISBEHAVING, ids=repr)
def test_a_misbehaving_recipe_gets_an_error_naming_what_it_did_never_a_pass(misbehaving):
    with pytest.raises(RecipeError) as raised:
        check_recipe(misbehaving.recipe)
    assert raised.value.property == misbehaving.property, str(raised.value)
    assert misbehaving.words in str(raised.value)


def test_a_recipe_that_raises_is_reported_with_its_exception_and_the_input_that_raised_it():
    with pytest.raises(RecipeError) as raised:
        check_recipe(MISBEHAVING[0].recipe)
    assert isinstance(raised.value.__cause__, ValueError)
    assert "micro-batches [1]" in str(raised.value) and "misbehaving.py" in str(raised.value)


def test_a_recipe_that_changes_its_data_is_told_that_callers_reuse_it():
    with pytest.raises(RecipeError, match="Callers reuse their data"):
        check_recipe(MISBEHAVING[3].recipe)


def test_a_recipe_that_is_not_deterministic_is_told_so():
    calls = itertools.count()

    def sometimes_idle(model, optimizer, micro_batches, loss_fn, accumulation_steps):
        if next(calls) % 3:
            CORRECT_RECIPE(model, optimizer, micro_batches, loss_fn, accumulation_steps)

    with pytest.raises(RecipeError, match="not deterministic"):
        check_recipe(sometimes_idle)


@pytest.mark.parametrize("recipe", [42, "my_loop", None], ids=repr)
def test_something_that_is_not_callable_is_refused_by_the_contract(recipe):
    with pytest.raises(RecipeContractError, match="must be a callable"):
        check_recipe(recipe)


def test_a_recipe_with_the_wrong_parameters_is_refused_by_the_contract():
    with pytest.raises(RecipeContractError, match="accumulation_steps"):
        check_recipe(takes_four_arguments)
    with pytest.raises(RecipeContractError, match="the keywords scheduler"):
        check_recipe(lambda model, optimizer, micro_batches, loss_fn, accumulation_steps: None, scheduler=True)


def test_unknown_options_are_refused_before_anything_runs():
    with pytest.raises(ValueError, match="optimizer 'LBFGS'"):
        check_recipe(CORRECT_RECIPE, optimizers=("LBFGS",))
    with pytest.raises(ValueError, match="last_window='keep'"):
        check_recipe(CORRECT_RECIPE, last_window="keep")


def test_a_misspelled_option_is_rejected_with_the_valid_ones_and_the_nearest():
    with pytest.raises(TypeError, match=r"'max_exampels' \(did you mean 'max_examples'\?\); the options are: max_examples"):
        check_recipe(accumulate, max_exampels=5)


def test_all_failures_reports_every_failing_property_each_with_its_own_shrunk_counterexample():
    with pytest.raises(RecipeError) as caught:
        check_recipe(tutorial_second_loop, max_examples=30, all_failures=True)
    error = caught.value
    names = [error.property] + [other.property for other in error.others]
    assert len(names) >= 2 and len(set(names)) == len(names), names
    assert str(error).startswith(f"{len(names)} recipe properties fail"), str(error)[:200]
    assert all(other.example is not None for other in error.others)


def test_rows_are_counted_on_a_torch_whose_forward_hooks_take_no_keywords(monkeypatch):
    """torch < 2.0 (no with_kwargs, no always_call): the top-level model's positional calls are counted, every one."""
    import torch

    from properties.recipes import CORRECT_RECIPE, check_recipe

    original = torch.nn.Module.register_forward_pre_hook

    def without_keywords(self, hook, *args, **kwargs):
        if kwargs:
            raise TypeError("register_forward_pre_hook() got an unexpected keyword argument 'with_kwargs'")
        return original(self, hook)

    monkeypatch.setattr(torch.nn.Module, "register_forward_pre_hook", without_keywords)
    check_recipe(CORRECT_RECIPE, max_examples=10)


def test_rows_are_counted_on_a_torch_whose_forward_hooks_take_keywords_but_not_always_call(monkeypatch):
    """torch 2.0 (with_kwargs, no always_call): every module's calls are counted once; the pre-hook registered before
    always_call is refused must not stay behind (it counted the first call and kept the depth above 0 for good)."""
    original = torch.nn.Module.register_forward_hook

    def without_always_call(self, hook, **kwargs):
        if "always_call" in kwargs:
            raise TypeError("register_forward_hook() got an unexpected keyword argument 'always_call'")
        return original(self, hook, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "register_forward_hook", without_always_call)
    check_recipe(CORRECT_RECIPE, max_examples=10)
    with pytest.raises(RecipeError, match="one optimizer step at the end of each window") as raised:
        check_recipe(steps_every_micro_batch)
    assert "stepped every micro-batch" in str(raised.value)


def unhook_optimizer_steps(monkeypatch):
    """What the first torch.compile in a process does to torch.optim before torch 2.3 (dynamo's TorchPatcher.patch):
    each class's step becomes its function without torch's hook-running wrapper, marked hooked so no later
    optimizer wraps it again; step hooks registered afterwards are never called."""
    wrapper = torch.optim.Optimizer.profile_hook_step(lambda: None).__code__
    for optimizer_class in vars(torch.optim).values():
        if isinstance(optimizer_class, type) and issubclass(optimizer_class, torch.optim.Optimizer):
            step = vars(optimizer_class).get("step")
            if step is None:
                continue
            inner = step.__wrapped__ if getattr(step, "__code__", None) is wrapper else step

            def unhooked(*args, _inner=inner, **kwargs):
                return _inner(*args, **kwargs)

            unhooked.hooked = True
            monkeypatch.setattr(optimizer_class, "step", unhooked)


@versions.requires(versions.OPTIMIZER_STEP_HOOKS)
def test_steps_are_recorded_on_a_torch_whose_compile_unhooked_the_optimizer_steps(monkeypatch):
    """torch 2.0–2.2 after any torch.compile in the process: register_step_pre_hook exists but its hooks never run, so
    the checker wraps the optimizer's step itself; the correct loop passes and a loop stepping every micro-batch fails."""
    from properties.recipes.trace import step_hooks_run

    if versions.COMPILE_KEEPS_OPTIMIZER_STEP_HOOKS.expected():  # before 2.3 a compile earlier in this process unhooks them
        assert step_hooks_run(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1))
    unhook_optimizer_steps(monkeypatch)
    assert not step_hooks_run(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1))
    check_recipe(CORRECT_RECIPE, max_examples=10)
    with pytest.raises(RecipeError, match="one optimizer step at the end of each window") as raised:
        check_recipe(steps_every_micro_batch)
    assert "stepped every micro-batch" in str(raised.value)
