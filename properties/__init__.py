"""Property-based verification of gradient accumulation in PyTorch.

Importing this package is cheap (no torch): pytest loads it as a plugin in every run.
"""

from properties.recipes import RecipeContractError, RecipeError, check_recipe

__all__ = ["check_recipe", "RecipeError", "RecipeContractError"]
