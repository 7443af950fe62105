"""The pytest plugin this package installs (entry point `pytest11`): `pytest --recipe MODULE:FUNCTION` checks a training loop.

With --recipe, pytest collects only properties/recipe_tests.py (one test per recipe property) and
runs it against that function; without it, the plugin only adds the options. Nothing here imports
torch unless --recipe is given.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
import types
from pathlib import Path

import pytest

pytest_plugins = ["properties.summary", "properties.junit"]

RECIPE_TESTS = "properties.recipe_tests"
FRAMEWORK_TESTS = "properties.framework_tests"
FRAMEWORK = pytest.StashKey[object]()
RECIPE = pytest.StashKey[object]()
OPTIONS = pytest.StashKey[object]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """--recipe MODULE:FUNCTION and the options of the check."""
    group = parser.getgroup("recipe", "checking a gradient-accumulation training loop (properties.recipes)")
    group.addoption(
        "--recipe",
        metavar="MODULE:FUNCTION",
        default=None,
        help="run only the recipe properties, against FUNCTION(model, optimizer, micro_batches, loss_fn, "
        "accumulation_steps) from MODULE (a dotted name importable from the current directory, or a path to a .py file)",
    )
    group.addoption(
        "--recipe-last-window",
        choices=("step", "drop"),
        default="step",
        help="what the recipe does with a short last window: step it (default) or drop it",
    )
    group.addoption("--recipe-dtype", choices=("float64", "float32"), default="float64", help="parameter and data dtype")
    group.addoption(
        "--recipe-optimizers",
        default=None,
        metavar="NAMES",
        help="comma-separated subset of SGD,SGD+momentum,Adam,AdamW (default: all)",
    )
    group.addoption(
        "--recipe-clip-norm",
        type=float,
        default=None,
        metavar="MAX_NORM",
        help="call the recipe with max_norm=MAX_NORM; it must clip once per window, after accumulating",
    )
    group.addoption(
        "--recipe-scheduler",
        action="store_true",
        help="call the recipe with scheduler= a StepLR; it must step it once per optimizer step taken",
    )
    group.addoption(
        "--recipe-scaler",
        action="store_true",
        help="call the recipe with scaler= a CPU GradScaler; a window with an inf/NaN micro-step must be skipped",
    )
    group.addoption(
        "--recipe-model",
        metavar="MODULE:FACTORY",
        default=None,
        help="check the recipe on your model: FACTORY() builds a new nn.Module (a Hugging Face model included); needs --recipe-data",
    )
    group.addoption(
        "--recipe-loss",
        metavar="MODULE:LOSS",
        default=None,
        help="the loss the recipe is handed: a RecipeLoss, a mean-reduced torch loss or loss function, or a function of no "
        "arguments that returns one (e.g. properties:causal_lm_cross_entropy)",
    )
    group.addoption(
        "--recipe-data",
        metavar="MODULE:DATA",
        default=None,
        help="the dataset (x, y), a Hypothesis strategy of them, or a function of no arguments that returns either "
        "(e.g. properties:causal_lm_sequences)",
    )
    group.addoption(
        "--recipe-output",
        metavar="MODULE:FUNCTION",
        default=None,
        help="FUNCTION(what the model returns) is the loss's input (default: a tensor as it is, a model output's .logits)",
    )
    group.addoption(
        "--framework",
        choices=("transformers", "accelerate", "pytorch-lightning"),
        default=None,
        help="with --recipe-model (and --recipe-loss, --recipe-data): run only the check of your model under that "
        "framework (the Trainer with the model's own loss; Accelerate's and Lightning's Hugging Face loops)",
    )
    group.addoption(
        "--recipe-examples",
        type=int,
        default=None,
        metavar="N",
        help="examples per recipe property (default: the Hypothesis profile's max_examples)",
    )


def load_recipe(spec: str, option: str = "--recipe", example: str = "mymodule:my_loop", what: str = "FUNCTION") -> object:
    """The object MODULE:NAME names: MODULE imported with the current directory on sys.path, or a .py file's path."""
    module_name, _, attribute = spec.rpartition(":")
    if not module_name or not attribute:
        raise pytest.UsageError(f"{option} {spec!r}: expected MODULE:{what}, e.g. {option} {example}")
    try:
        if module_name.endswith(".py") or os.sep in module_name or "/" in module_name:
            path = Path(module_name).resolve()
            module_spec = importlib.util.spec_from_file_location(path.stem, path)
            if module_spec is None or not path.is_file():
                raise FileNotFoundError(f"no such file: {path}")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules.setdefault(path.stem, module)
            module_spec.loader.exec_module(module)
        else:
            cwd = os.getcwd()
            if cwd not in sys.path:
                sys.path.insert(0, cwd)
            module = importlib.import_module(module_name)
    except Exception as error:
        raise pytest.UsageError(f"{option} {spec!r}: cannot import {module_name!r}: {type(error).__name__}: {error}") from error
    target: object = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise pytest.UsageError(f"{option} {spec!r}: {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    return target


def takes_no_arguments(value: object) -> bool:
    """Whether `value` is a function (not a class or a module) that can be called with no arguments."""
    if isinstance(value, (type, types.ModuleType)) or not callable(value):
        return False
    try:
        inspect.signature(value).bind()
    except (TypeError, ValueError):
        return False
    return True


def user_objects(config: pytest.Config) -> dict:
    """model=, loss=, data= and output= from --recipe-model/-loss/-data/-output; a loss or data named by a function of
    no arguments (properties:causal_lm_cross_entropy) is what it returns."""
    from hypothesis.strategies import SearchStrategy

    found = {}
    for name, example, what in (
        ("model", "mymodule:build_model", "FACTORY"),
        ("loss", "properties:causal_lm_cross_entropy", "LOSS"),
        ("data", "properties:causal_lm_sequences", "DATA"),
        ("output", "mymodule:logits_of", "FUNCTION"),
    ):
        spec = config.getoption(f"recipe_{name}")
        if spec:
            value = load_recipe(spec, f"--recipe-{name}", example, what)
            if name in ("loss", "data") and not isinstance(value, SearchStrategy) and takes_no_arguments(value):
                value = value()
            found[name] = value
    return found


def recipe_options(config: pytest.Config):
    """The RecipeOptions the command line asks for (max_examples: --recipe-examples, else the Hypothesis profile's)."""
    from hypothesis.errors import InvalidArgument

    from properties.recipes.options import OPTIMIZER_NAMES, RecipeOptions

    names = config.getoption("recipe_optimizers")
    examples = config.getoption("recipe_examples")
    if examples is None:
        from hypothesis import settings

        examples = settings.default.max_examples
    try:
        return RecipeOptions(
            max_examples=examples,
            optimizers=tuple(n.strip() for n in names.split(",")) if names else OPTIMIZER_NAMES,
            last_window=config.getoption("recipe_last_window"),
            dtype=config.getoption("recipe_dtype"),
            clip_norm=config.getoption("recipe_clip_norm"),
            scheduler=config.getoption("recipe_scheduler"),
            scaler=config.getoption("recipe_scaler"),
            **user_objects(config),
        )
    except (ValueError, InvalidArgument) as error:
        raise pytest.UsageError(str(error)) from None


def pytest_configure(config: pytest.Config) -> None:
    """With --recipe: load the function, and make the recipe properties the only thing pytest collects; with
    --framework, the framework check of --recipe-model is the only thing collected."""
    framework = config.getoption("framework", default=None)
    if framework:
        if config.getoption("recipe", default=None) or not config.getoption("recipe_model", default=None):
            raise pytest.UsageError("--framework checks your model: give --recipe-model MODULE:FACTORY (and no --recipe)")
        config.stash[FRAMEWORK] = (framework, user_objects(config))
        config.args[:] = [importlib.util.find_spec(FRAMEWORK_TESTS).origin]
        return
    spec = config.getoption("recipe", default=None)
    if not spec:
        return
    config.stash[RECIPE] = load_recipe(spec)
    config.stash[OPTIONS] = recipe_options(config)
    if "s" not in config.option.reportchars and "a" not in config.option.reportchars.lower():
        config.option.reportchars += "s"  # a property skipped under --recipe always says why
    config.args[:] = [importlib.util.find_spec(RECIPE_TESTS).origin]


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Which recipe is checked, and how."""
    if RECIPE not in config.stash:
        return []
    options = config.stash[OPTIONS]
    return [
        f"recipe {config.getoption('recipe')}: check_recipe options {options.call() or 'defaults'} "
        f"({options.max_examples} examples per property, derandomized)"
    ]


@pytest.fixture(scope="session")
def framework_under_test(pytestconfig: pytest.Config):
    """(framework name, model=/loss=/data=/output=) from --framework and the --recipe-* options."""
    if FRAMEWORK not in pytestconfig.stash:
        pytest.skip("the framework check runs with --framework NAME --recipe-model MODULE:FACTORY")
    return pytestconfig.stash[FRAMEWORK]


@pytest.fixture(scope="session")
def recipe_under_test(pytestconfig: pytest.Config) -> object:
    """The function --recipe names."""
    if RECIPE not in pytestconfig.stash:
        pytest.skip("the recipe properties run with --recipe MODULE:FUNCTION")
    return pytestconfig.stash[RECIPE]


@pytest.fixture(scope="session")
def recipe_check_options(pytestconfig: pytest.Config):
    """The RecipeOptions from the --recipe-* options."""
    if OPTIONS not in pytestconfig.stash:
        pytest.skip("the recipe properties run with --recipe MODULE:FUNCTION")
    return pytestconfig.stash[OPTIONS]
