"""What check_recipe raises: a failed property with its shrunk counterexample, or a recipe that breaks the contract."""

from __future__ import annotations


class RecipeError(AssertionError):
    """A recipe property failed: `.property`, `.example` (check_example replays it) and `.causes` say which, where, why.

    With check_recipe(..., all_failures=True), `.others` holds one more RecipeError per other failing property.
    `.comparison` is the numeric comparison failure behind it (a properties.compare.ComparisonError, with its
    `.ratio`, error ÷ tolerance), or None when the property failed structurally.
    """

    def __init__(
        self,
        message: str,
        *,
        property: str = "",
        example=None,
        causes: tuple[str, ...] = (),
        others: tuple = (),
        comparison=None,
    ):
        super().__init__(message)
        self.comparison = comparison
        self.property = property
        self.example = example
        self.causes = tuple(causes)
        self.others = tuple(others)


class RecipeContractError(RecipeError):
    """The recipe cannot be called the way the contract calls it: not callable, or the wrong parameters."""
