"""The options of check_recipe: what Hypothesis may draw and which extras the recipe is handed."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

OPTIMIZER_NAMES = ("SGD", "SGD+momentum", "Adam", "AdamW")
LAST_WINDOW_POLICIES = ("step", "drop")
DTYPE_NAMES = ("float64", "float32")
MODEL_KINDS = ("linear", "mlp", "tied", "embedding")


@dataclass(frozen=True)
class RecipeOptions:
    """max_examples, the optimizers, models, dtype and epochs drawn, the last-window policy, the extras passed to the recipe,
    and the user's model factory, loss and data (each a value or a strategy; None: the suite's)."""

    max_examples: int = 100
    optimizers: tuple[str, ...] = OPTIMIZER_NAMES
    last_window: str = "step"
    dtype: str = "float64"
    clip_norm: float | None = None
    scheduler: bool = False
    scaler: bool = False
    models: tuple[str, ...] = MODEL_KINDS
    max_micro_batches: int = 7
    max_k: int = 4
    max_epochs: int = 3
    model: object = None
    loss: object = None
    data: object = None
    output: object = None
    all_failures: bool = False
    shrink: bool = True

    @classmethod
    def of(cls, **options) -> "RecipeOptions":
        """The options check_recipe was given; an unknown name is a TypeError listing the valid ones (and the nearest)."""
        valid = list(cls.__dataclass_fields__)
        unknown = [name for name in options if name not in valid]
        if unknown:
            hints = []
            for name in unknown:
                near = difflib.get_close_matches(name, valid, n=1)
                hints.append(f"{name!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
            raise TypeError(f"check_recipe got unknown option(s) {', '.join(hints)}; the options are: {', '.join(valid)}")
        return cls(**options)

    def __post_init__(self):
        dtype = self.dtype if isinstance(self.dtype, str) else str(self.dtype).replace("torch.", "")
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "optimizers", tuple(self.optimizers))
        object.__setattr__(self, "models", tuple(self.models))
        problems = [
            f"optimizer {name!r} is not one of {OPTIMIZER_NAMES}" for name in self.optimizers if name not in OPTIMIZER_NAMES
        ]
        problems += [f"model kind {kind!r} is not one of {MODEL_KINDS}" for kind in self.models if kind not in MODEL_KINDS]
        if not self.optimizers:
            problems.append("optimizers is empty")
        if not self.models:
            problems.append("models is empty")
        if self.last_window not in LAST_WINDOW_POLICIES:
            problems.append(f"last_window={self.last_window!r} is not one of {LAST_WINDOW_POLICIES}")
        if dtype not in DTYPE_NAMES:
            problems.append(f"dtype {dtype!r} is not one of {DTYPE_NAMES}")
        if self.clip_norm is not None and not self.clip_norm > 0:
            problems.append(f"clip_norm={self.clip_norm!r} must be a positive number (or None: no clipping)")
        if self.max_examples < 1 or self.max_micro_batches < 1 or self.max_k < 1 or self.max_epochs < 1:
            problems.append("max_examples, max_micro_batches, max_k and max_epochs must be at least 1")
        if problems:
            raise ValueError("check_recipe options: " + "; ".join(problems))
        if (self.model, self.loss, self.data, self.output) != (None, None, None, None):
            from properties.recipes.user_options import check_user_options

            check_user_options(self)

    @property
    def user(self) -> bool:
        """Whether the user's model and data are drawn (else the suite's ModelSpec models and their data)."""
        return self.model is not None

    def extras(self) -> tuple[str, ...]:
        """The keyword arguments the recipe is called with beyond the five positional ones."""
        return tuple(
            name
            for name, on in (("max_norm", self.clip_norm is not None), ("scheduler", self.scheduler), ("scaler", self.scaler))
            if on
        )

    def call(self) -> str:
        """These options as the keyword arguments of a check_recipe call (only those that differ from the defaults)."""
        default = RecipeOptions()
        changed = [
            f"{name}={getattr(self, name)!r}"
            for name in self.__dataclass_fields__
            if getattr(self, name) is not getattr(default, name) and getattr(self, name) != getattr(default, name)
        ]
        return ", ".join(changed)
