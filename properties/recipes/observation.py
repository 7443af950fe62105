"""One example observed: the recipe's run, and on demand the reference run and what each of the recipe's steps should use."""

from __future__ import annotations

from functools import cached_property
from typing import Callable

from properties.recipes.examples import RecipeCase
from properties.recipes.full_batch import Expected, Probe, reference_run
from properties.recipes.trace import Run, observe


class Observation:
    """The recipe's Run on `example`; `reference` and `expected(i)` are computed the first time they are asked for."""

    def __init__(self, recipe: Callable, example: RecipeCase):
        self.recipe = recipe
        self.example = example
        self.run: Run = observe(recipe, example)
        self._expected: dict[int, Expected] = {}

    @cached_property
    def reference(self) -> Run:
        """The full-batch reference's Run on the same example."""
        return reference_run(self.example)

    @cached_property
    def probe(self) -> Probe:
        """A model and the epoch's samples for gradients at the recipe's recorded parameters."""
        return Probe(self.example, self.run.precision)

    def segment(self, i: int) -> tuple[int, int]:
        """Rows step i accounts for: since the later of the previous step and the start of its window, up to the step."""
        stop = self.run.steps[i].rows
        previous = self.run.steps[i - 1].rows if i else 0
        return max(previous, self.example.window_start(stop)), stop

    def expected(self, i: int) -> Expected:
        """Step i's expected gradient: the mean-loss gradient of its rows at the parameters the recipe had just before it."""
        if i not in self._expected:
            start, stop = self.segment(i)
            self._expected[i] = self.probe.expected(self.run.steps[i].params, start, stop)
        return self._expected[i]
