"""The recipe contract: recipe(model, optimizer, micro_batches, loss_fn, accumulation_steps, **extras) -> None."""

from __future__ import annotations

import inspect

from properties.recipes.errors import RecipeContractError

POSITIONAL = ("model", "optimizer", "micro_batches", "loss_fn", "accumulation_steps")
SIGNATURE = "recipe(model, optimizer, micro_batches, loss_fn, accumulation_steps)"
EXTRAS = {
    "max_norm": "clip_norm=MAX_NORM (--recipe-clip-norm)",
    "scheduler": "scheduler=True (--recipe-scheduler)",
    "scaler": "scaler=True (--recipe-scaler)",
}


def recipe_name(recipe: object) -> str:
    """'module.qualname' for a function, repr() for anything else."""
    qualname = getattr(recipe, "__qualname__", None) or getattr(recipe, "__name__", None)
    module = getattr(recipe, "__module__", None)
    return f"{module}.{qualname}" if qualname and module else repr(recipe)


def check_contract(recipe: object, extras: tuple[str, ...] = ()) -> None:
    """Raise RecipeContractError unless `recipe` is callable with the five positional arguments and the `extras` keywords."""
    if not callable(recipe):
        raise RecipeContractError(
            f"the recipe must be a callable {SIGNATURE}; got {type(recipe).__name__} {recipe!r}", property="contract"
        )
    try:
        signature = inspect.signature(recipe)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(*POSITIONAL, **{name: name for name in extras})
    except TypeError as error:
        wanted = SIGNATURE if not extras else SIGNATURE[:-1] + ", " + ", ".join(f"{e}=…" for e in extras) + ")"
        needed = [
            EXTRAS[p.name]
            for p in signature.parameters.values()
            if p.name in EXTRAS and p.name not in extras and p.default is p.empty
        ]
        raise RecipeContractError(
            f"{recipe_name(recipe)}{signature} cannot be called as {wanted}: {error}. "
            f"The contract passes the five positional arguments {', '.join(POSITIONAL)}"
            + (f" and the keywords {', '.join(extras)} (asked for by the options)" if extras else "")
            + (f"; to hand it what it needs, check it with {' and '.join(needed)}" if needed else ""),
            property="contract",
        ) from None
