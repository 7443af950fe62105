"""Check anyone's gradient-accumulation loop: the recipe contract, check_recipe, and bundled right and wrong loops.

Importing this package is cheap (no torch, no Hypothesis): they load on the first check.
"""

from __future__ import annotations

from properties.recipes.errors import RecipeContractError, RecipeError
from properties.recipes.options import RecipeOptions

LAZY = {
    "CORRECT_RECIPE": "properties.recipes.bundled",
    "CORRECT_WHEN_DROPPING": "properties.recipes.bundled",
    "BUGGY_RECIPES": "properties.recipes.bundled",
    "BuggyRecipe": "properties.recipes.bundled",
    "accumulate": "properties.recipes.bundled",
    "PROPERTIES": "properties.recipes.checks",
    "RecipeCase": "properties.recipes.examples",
    "recipe_cases": "properties.recipes.examples",
    "RecipeReport": "properties.recipes.search",
    "check_example": "properties.recipes.search",
    "RecipeLoss": "properties.recipes.losses",
    "token_cross_entropy": "properties.recipes.losses",
    "causal_lm_cross_entropy": "properties.recipes.losses",
    "causal_lm_sequences": "properties.recipes.tokens",
    "mean_squared_error": "properties.recipes.losses",
    "token_sequences": "properties.recipes.tokens",
    "TokenModel": "properties.recipes.tokens",
    "TokenModelFactory": "properties.recipes.tokens",
}


def check_recipe(recipe, **options):
    """Check recipe(model, optimizer, micro_batches, loss_fn, accumulation_steps) against one full-batch step per window.

    Hypothesis draws models, data, unequal micro-batch sizes (1 included), k and an optimizer; every
    property runs the recipe and the full-batch reference and compares them. Returns a RecipeReport
    when all hold; raises RecipeError (an AssertionError) with the shrunk counterexample, what differed
    and its likely cause otherwise, and RecipeContractError when the recipe cannot be called as the
    contract says. Derandomized: every run draws the same examples.

    Options (see RecipeOptions): max_examples=100; optimizers, a subset of ("SGD", "SGD+momentum",
    "Adam", "AdamW"); last_window="step" (a short last window is stepped) or "drop"; dtype "float64"
    or "float32"; models, a subset of ("linear", "mlp", "tied", "embedding"); max_micro_batches=7;
    max_k=4; max_epochs=3 (the recipe is called once per epoch, 1 … max_epochs, on the same model and
    optimizer, against as many reference epochs). Your own model, loss and data, each a value or a
    strategy: model= a factory (no arguments, called under torch.manual_seed(seed)) of any nn.Module,
    Hugging Face models included, with data= a dataset (x, y) of N rows, x a tensor (passed positionally) or a
    mapping of keyword → tensor (passed as keywords), cut into micro-batches by the checker; loss= a mean-reduced
    loss (token_cross_entropy() or causal_lm_cross_entropy() with ignore_index: the window's mean is over its
    counted tokens), read from a model output's .logits, or from output=f(model_output). Extras, each handed to the recipe as a keyword: clip_norm=c calls it with max_norm=c
    (clip once per window, after accumulating); scheduler=True with scheduler= a StepLR (step it once
    per optimizer step taken); scaler=True with scaler= a CPU GradScaler, while some micro-batches get
    an inf target (a window holding one is skipped whole and the scale backs off once).
    all_failures=True searches on after the first failing property and reports every failing
    property, each with its own shrunk counterexample (slower, only when the recipe fails). shrink=False reports the
    first failing example as drawn, unshrunk: a verdict sooner, a larger counterexample.
    """
    __tracebackhide__ = True
    from properties.recipes.search import run_check

    return run_check(recipe, RecipeOptions.of(**options))


def __getattr__(name: str):
    """Load the torch-backed names on first use."""
    if name in LAZY:
        import importlib

        return getattr(importlib.import_module(LAZY[name]), name)
    raise AttributeError(f"module 'properties.recipes' has no attribute {name!r}")


__all__ = ["check_recipe", "RecipeError", "RecipeContractError", "RecipeOptions", *LAZY]
