"""What check_recipe raises: a failed property with its shrunk counterexample, or a recipe that breaks the contract."""

from __future__ import annotations


class RecipeError(AssertionError):
    """A recipe property failed: `.property`, `.example` (check_example replays it) and `.causes` say which, where, why."""

    def __init__(self, message: str, *, property: str = "", example=None, causes: tuple[str, ...] = ()):
        super().__init__(message)
        self.property = property
        self.example = example
        self.causes = tuple(causes)


class RecipeContractError(RecipeError):
    """The recipe cannot be called the way the contract calls it: not callable, or the wrong parameters."""
