"""Property-based verification of gradient accumulation in PyTorch.

Importing this package is cheap (no torch): pytest loads it as a plugin in every run, and
everything but the recipe checker's names is imported on first use.

The public API:

- recipes: `check_recipe`, `RecipeError`, `RecipeContractError`; your model's loss and data:
  `causal_lm_cross_entropy`, `causal_lm_sequences`, `token_cross_entropy`, `token_sequences`;
- examples and strategies: `Case`, `ModelSpec`, `cases`, `model_specs`, `batch_splits`,
  `dtypes`, `seeds`, `step_counts`, `OptimizerSpec`, `optimizer_specs`, `sgd_specs`, `adam_specs`;
- checks (each raises AssertionError saying what differed): `check_backward_sums`,
  `check_accumulation_matches_full_batch`, `check_windows_match_full_batch_steps`,
  `check_backward_after_reset_is_fresh`, `check_mse_matches_closed_form`,
  `check_step_follows_documented_update`, `check_accumulated_gradient_within_rounding_bound`;
- comparison: `assert_grads_close`, `assert_tensor_close`, `Tolerance`, `window_bound`, and `ComparisonError`, the
  AssertionError a numeric comparison raises (`.parameter`, `.ratio` = error ÷ tolerance, `.tolerance`).

Everything else (modules under properties.invariants, .mutants, .distributed, the tools) is internal.
"""

from __future__ import annotations

import importlib

from properties.recipes import RecipeContractError, RecipeError, check_recipe

PUBLIC = {
    "causal_lm_cross_entropy": "properties.recipes.losses",
    "causal_lm_sequences": "properties.recipes.tokens",
    "token_cross_entropy": "properties.recipes.losses",
    "token_sequences": "properties.recipes.tokens",
    "Case": "properties.case",
    "ModelSpec": "properties.models",
    "cases": "properties.strategies",
    "model_specs": "properties.strategies",
    "batch_splits": "properties.strategies",
    "dtypes": "properties.strategies",
    "seeds": "properties.strategies",
    "step_counts": "properties.strategies",
    "OptimizerSpec": "properties.optimizers",
    "optimizer_specs": "properties.optimizers",
    "sgd_specs": "properties.optimizers",
    "adam_specs": "properties.optimizers",
    "check_backward_sums": "properties.invariants.backward",
    "check_accumulation_matches_full_batch": "properties.invariants.equivalence",
    "check_windows_match_full_batch_steps": "properties.invariants.equivalence",
    "check_backward_after_reset_is_fresh": "properties.invariants.zero_grad",
    "check_mse_matches_closed_form": "properties.invariants.closed_form",
    "check_step_follows_documented_update": "properties.invariants.optimizer_steps",
    "check_accumulated_gradient_within_rounding_bound": "properties.invariants.precision",
    "assert_grads_close": "properties.compare",
    "assert_tensor_close": "properties.compare",
    "Tolerance": "properties.compare",
    "ComparisonError": "properties.compare",
    "window_bound": "properties.bounds",
}

__all__ = ["check_recipe", "RecipeError", "RecipeContractError", *PUBLIC]


def __getattr__(name: str):
    """Import a public name's module on first use."""
    if name in PUBLIC:
        return getattr(importlib.import_module(PUBLIC[name]), name)
    raise AttributeError(f"module 'properties' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
