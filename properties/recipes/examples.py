"""One recipe example: a Case or the user's (model, data, micro-batch sizes), the loss, k, epochs, an optimizer and the extras."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cached_property, lru_cache

import torch
from hypothesis import assume
from hypothesis import strategies as st

from properties.case import Case
from properties.recipes.hyperparameters import SCALER_SETTINGS, SCHEDULER_GAMMA, OptimizerChoice
from properties.recipes.losses import MSE, RecipeLoss
from properties.recipes.options import RecipeOptions
from properties.recipes.outputs import OutputLoss
from properties.strategies import batch_splits, cases, model_specs, seeds

DTYPES = {"float64": torch.float64, "float32": torch.float32}


@lru_cache(maxsize=256)
def built(case: Case) -> torch.nn.Module:
    """The case's model as first built; never handed out, only copied."""
    return case.build_model()


@dataclass(frozen=True)
class RecipeCase:
    """What a recipe is run on: the case (one epoch's micro-batches), k, the optimizer, the last-window policy, the extras
    it is handed, the loss, and how many epochs: the recipe is called once per epoch on the same model and optimizer."""

    case: Case
    k: int
    optimizer: OptimizerChoice
    last_window: str = "step"
    clip_norm: float | None = None
    scheduler: bool = False
    scaler: bool = False
    non_finite: tuple[int, ...] = ()
    loss: RecipeLoss = MSE
    epochs: int = 1

    @property
    def sizes(self) -> tuple[int, ...]:
        """The sizes of every micro-batch the run sees: one epoch's, once per epoch."""
        return tuple(self.case.sizes) * self.epochs

    @property
    def calls(self) -> int:
        """How many times the recipe is called: once per epoch."""
        return self.epochs

    @property
    def epoch_length(self) -> int:
        """Micro-batches per epoch."""
        return len(self.sizes) // max(self.epochs, 1)

    @cached_property
    def all_windows(self) -> list[range]:
        """Per epoch, micro-batch indices of each window of k consecutive micro-batches; each epoch's last may be shorter."""
        n = self.epoch_length
        return [
            range(epoch * n + start, epoch * n + min(start + self.k, n))
            for epoch in range(self.epochs)
            for start in range(0, n, self.k)
        ]

    @cached_property
    def windows(self) -> list[range]:
        """The windows that are stepped: all of them, or all but a short last one when the policy drops it."""
        windows = self.all_windows
        return windows if self.last_window == "step" or not windows or len(windows[-1]) == self.k else windows[:-1]

    @cached_property
    def boundaries(self) -> list[int]:
        """Rows seen after micro-batch j, for j = 0 … n (0 first)."""
        total, result = 0, [0]
        for size in self.sizes:
            total += size
            result.append(total)
        return result

    def micro_batch_after(self, rows: int) -> str:
        """'micro-batch j' (1-based) when `rows` rows end micro-batch j; '0 micro-batches' or 'row r' otherwise."""
        if rows == 0:
            return "no micro-batch"
        if rows in self.boundaries:
            j = self.boundaries.index(rows)
            if self.epochs == 1:
                return f"micro-batch {j}"
            epoch, within = divmod(j - 1, self.epoch_length)
            return f"micro-batch {within + 1} of epoch {epoch + 1}"
        return f"row {rows} (inside a micro-batch)"

    def window_start(self, rows: int) -> int:
        """First row of the k-window that holds row `rows - 1` (0 when rows is 0)."""
        for window in self.all_windows:
            if self.boundaries[window.start] < rows <= self.boundaries[window.stop]:
                return self.boundaries[window.start]
        return 0

    def is_finite_window(self, window: range) -> bool:
        """Whether no micro-batch of the window has a non-finite target."""
        return not any(j % self.epoch_length in self.non_finite for j in window)

    @cached_property
    def handed_loss(self) -> OutputLoss:
        """The loss_fn the recipe is handed (and the reference uses): the loss on the model's output (its .logits, or
        the user's output=)."""
        return OutputLoss(self.loss.fn, getattr(self.case, "output", None), self.loss.count)

    def build_model(self) -> torch.nn.Module:
        """A fresh copy of the case's model (built once per case, then copied: building is the slow part)."""
        if not isinstance(self.case, Case):
            return self.case.build_model()
        return copy.deepcopy(built(self.case))

    def call_micro_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """What each call of the recipe is handed: one epoch's micro-batches; those listed in non_finite get one inf target."""
        batches = self.case.micro_batches()
        for j in self.non_finite:
            y = batches[j][1].clone()
            y.view(-1)[0] = float("inf")
            batches[j] = (batches[j][0], y)
        return batches

    def micro_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every micro-batch the run sees, in order: the epoch's, once per epoch."""
        return self.call_micro_batches() * self.epochs

    def __repr__(self) -> str:
        first_epoch = self.all_windows[: len(self.all_windows) // max(self.epochs, 1)]
        windows = ", ".join(str([self.sizes[j] for j in window]) for window in first_epoch)
        parts = [f"{self.case!r}", f"k={self.k}: windows {windows}", repr(self.optimizer)]
        short = len(self.case.sizes) % self.k
        if short:
            parts.append(f"short last window {'dropped' if self.last_window == 'drop' else 'stepped'}")
        if self.clip_norm is not None:
            parts.append(f"max_norm={self.clip_norm}")
        if self.scheduler:
            parts.append(f"StepLR(step_size=1, gamma={SCHEDULER_GAMMA})")
        if self.scaler:
            bad = [j + 1 for j in self.non_finite]
            parts.append(
                f"GradScaler(init_scale={SCALER_SETTINGS['init_scale']:g}), "
                + (f"inf target in micro-batch {', '.join(map(str, bad))}" if bad else "all finite")
            )
        if self.epochs > 1:
            parts.append(f"{self.epochs} epochs (the recipe called once per epoch on the same model and optimizer)")
        return "; ".join(parts)

    def _repr_pretty_(self, printer, cycle) -> None:
        """Hypothesis prints a falsifying example as its one-line description."""
        printer.text(repr(self))


def counts_every_window(micro_batches: list, loss: RecipeLoss, k: int) -> bool:
    """Whether every window of k consecutive micro-batches counts at least one item (a mean over none is undefined)."""
    counts = [loss.counted(y) for _, y in micro_batches]
    return all(sum(counts[start : start + k]) for start in range(0, len(counts), k))


def recipe_cases(options: RecipeOptions = RecipeOptions()) -> st.SearchStrategy[RecipeCase]:
    """Models, unequal micro-batch sizes (1 included), k (n a multiple of k or not), an optimizer, 1 … max_epochs epochs,
    extras from options; the user's model factory, loss and dataset when options name them."""
    if options.user:
        from properties.recipes.user_options import user_cases

        case_strategy = user_cases(options)
    else:
        from properties.recipes.user_options import losses

        suite_cases = cases(
            models=model_specs(options.models, max_features=3, large_features=3, sparse=False, layouts=["contiguous"]),
            sizes=batch_splits(min_k=1, max_k=options.max_micro_batches, max_size=3),
            dtype=DTYPES[options.dtype],
            seed=seeds(),
        )
        if options.loss is None:
            case_strategy = suite_cases.map(lambda case: (case, MSE))
        else:
            case_strategy = st.tuples(suite_cases, losses(options))
    ks = st.integers(1, options.max_k)
    optimizers = st.sampled_from([OptimizerChoice(name) for name in options.optimizers])
    epochs = st.integers(1, options.max_epochs)

    @st.composite
    def draw_example(draw) -> RecipeCase:
        case, loss = draw(case_strategy)
        k, optimizer, non_finite = draw(ks), draw(optimizers), ()
        assume(loss is MSE or counts_every_window(case.micro_batches(), loss, k))
        if options.scaler and (isinstance(case, Case) or case.full_batch()[1].is_floating_point()):
            non_finite = tuple(sorted(draw(st.sets(st.integers(0, len(case.sizes) - 1), max_size=2))))
        return RecipeCase(
            case,
            k,
            optimizer,
            options.last_window,
            options.clip_norm,
            options.scheduler,
            options.scaler,
            non_finite,
            loss,
            draw(epochs),
        )

    return draw_example()
