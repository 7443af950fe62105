"""The soak's correct-recipe family: the bundled correct loop against every applicable recipe property, per option set.

`python -m tools.reliability --soak` passes this file to pytest next to tests/ (pytest
collects a file named on its command line whatever its name), so under tools.soak_plugin
each option set is one @given test run for many examples. The option sets are the check_recipe
options the audit runs CORRECT_RECIPE with as its control (none, and each set a bundled wrong loop
needs: clip_norm=0.1, scheduler, scaler) plus dtype="float32". Every drawn example runs every
property that applies (properties.recipes.checks.failing), not only up to the first that fails:
the AssertionError raised for a failing example carries `by_property`, (property name, the
AssertionError its check raised), so the plugin records each failing property on its own, with the
error ÷ tolerance of a numeric comparison failure read from the error itself.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from properties.recipes import CORRECT_RECIPE, RecipeOptions
from properties.recipes.checks import failing
from properties.recipes.examples import recipe_cases
from properties.recipes.hyperparameters import scaler_supported
from properties.recipes.observation import Observation

SOAK_FAMILY = "correct_recipe"
OPTION_SETS = {
    "plain": RecipeOptions(),
    "clip_norm": RecipeOptions(clip_norm=0.1),
    "scheduler": RecipeOptions(scheduler=True),
    "scaler": RecipeOptions(scaler=True),
    "float32": RecipeOptions(dtype="float32"),
}
EXAMPLES = {name: recipe_cases(options) for name, options in OPTION_SETS.items()}
NEEDS_SCALER = pytest.mark.skipif(not scaler_supported(), reason="no CPU torch.amp.GradScaler (torch < 2.3)")


class PropertiesFail(AssertionError):
    """Some recipe properties fail on one example: `by_property` lists (property name, its AssertionError) for each."""

    def __init__(self, example, by_property: list[tuple[str, AssertionError]]):
        self.by_property = by_property
        lines = [f"{len(by_property)} recipe propert{'y' if len(by_property) == 1 else 'ies'} fail on {example!r}"]
        lines += [f"[{name}] {error}" for name, error in by_property]
        super().__init__("\n".join(lines))


@pytest.mark.parametrize(
    "option_set", [pytest.param(name, marks=NEEDS_SCALER if OPTION_SETS[name].scaler else ()) for name in OPTION_SETS]
)
@given(data=st.data())
def test_the_correct_recipe_satisfies_every_applicable_recipe_property(option_set, data):
    example = data.draw(EXAMPLES[option_set], label="example")
    found = failing(Observation(CORRECT_RECIPE, example))
    if found:
        raise PropertiesFail(example, [(prop.name, error) for prop, error in found])
