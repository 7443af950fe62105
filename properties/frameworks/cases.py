"""A framework example: a dataset of N rows cut by a DataLoader into batches of B, k batches a window, E epochs.

`FrameworkCase` is a `RecipeCase` whose micro-batches are what a sequential `DataLoader(dataset,
batch_size=B)` yields, epoch after epoch, and whose windows restart at every epoch (as each
framework's do): the recipe checker's observation, reference, properties and likely causes apply
to it unchanged. Its one-line description states the framework call that ran it. The rows are the
suite's regression rows (a `Case`, loss MSE) or padded token sequences (a `UserCase` of the token
model, loss = cross-entropy over the labels ≠ ignore_index).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Optional

import torch
from hypothesis import assume
from hypothesis import strategies as st

from properties.case import Case, dtype_name
from properties.models import ModelSpec
from properties.recipes import batches
from properties.recipes.examples import RecipeCase, counts_every_window
from properties.recipes.full_batch import full_batch_steps
from properties.recipes.hyperparameters import OptimizerChoice
from properties.recipes.losses import RecipeLoss, token_cross_entropy
from properties.recipes.observation import Observation
from properties.recipes.options import MODEL_KINDS
from properties.recipes.tokens import PAD, TokenModelFactory, padded
from properties.recipes.trace import Run, observe
from properties.recipes.user_case import UserCase, check_dataset, check_forward
from properties.strategies import model_specs, seeds

TOKEN_MODEL = TokenModelFactory(vocab=8, width=4)
TOKEN_LOSS = token_cross_entropy()

SGD = OptimizerChoice("SGD")


def dataloader_sizes(rows: int, batch_size: int) -> tuple[int, ...]:
    """The batch sizes a DataLoader(batch_size=B, drop_last=False) yields on N rows: B, …, B, then N mod B if any."""
    full, rest = divmod(rows, batch_size)
    return (batch_size,) * full + ((rest,) if rest else ())


@dataclass(frozen=True)
class FrameworkCase(RecipeCase):
    """N rows, batch size B, k, E epochs, SGD; `call` is how the framework was configured, in its own terms."""

    rows_per_epoch: int = 1
    batch_size: int = 1
    epochs: int = 1
    call: str = ""

    @classmethod
    def of(
        cls,
        model: ModelSpec,
        rows: int,
        batch_size: int,
        k: int,
        epochs: int = 1,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
        call: str = "",
    ) -> "FrameworkCase":
        """The example for a dataset of `rows` rows, cut into batches of `batch_size`, for `epochs` epochs."""
        sizes = dataloader_sizes(rows, batch_size) * epochs
        return cls(Case(model, sizes, dtype, seed), k, SGD, rows_per_epoch=rows, batch_size=batch_size, epochs=epochs, call=call)

    @classmethod
    def of_tokens(
        cls, lengths: tuple[int, ...], batch_size: int, k: int, epochs: int = 1, seed: int = 0, call: str = ""
    ) -> "FrameworkCase":
        """Padded token sequences of these lengths (one row each) as the dataset, the token model, token cross-entropy."""
        data = padded(tuple(lengths), max(lengths), TOKEN_MODEL.vocab, seed, TOKEN_LOSS.fn.ignore_index)
        sizes = dataloader_sizes(len(lengths), batch_size) * epochs
        case = UserCase(TOKEN_MODEL, data, sizes, TOKEN_LOSS, torch.float64, seed)
        return cls(case, k, SGD, loss=TOKEN_LOSS, rows_per_epoch=len(lengths), batch_size=batch_size, epochs=epochs, call=call)

    @classmethod
    def of_user(cls, setup: "UserSetup", data, batch_size: int, k: int, epochs: int = 1, seed: int = 0, call: str = ""):
        """The user's model and loss on `data` (x, y), cut by a DataLoader into batches of `batch_size`."""
        rows = batches.rows(data[0])
        sizes = dataloader_sizes(rows, batch_size) * epochs
        case = UserCase(setup.factory, data, sizes, setup.loss, setup.dtype, seed, output=setup.output)
        return cls(case, k, SGD, loss=setup.loss, rows_per_epoch=rows, batch_size=batch_size, epochs=epochs, call=call)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Every batch the run sees: the case holds the whole run's (one epoch's, E times over)."""
        return tuple(self.case.sizes)

    @property
    def calls(self) -> int:
        """The framework is called once and trains every epoch itself."""
        return 1

    def call_micro_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The framework's one call gets the whole run's batches (it takes one epoch's as its dataset)."""
        return self.micro_batches()

    @property
    def epoch_sizes(self) -> tuple[int, ...]:
        """The batch sizes of one epoch."""
        return dataloader_sizes(self.rows_per_epoch, self.batch_size)

    @property
    def epoch(self) -> Case | UserCase:
        """One epoch's case: its rows are the dataset (the whole run sees them once per epoch)."""
        return dataclasses.replace(self.case, sizes=self.epoch_sizes)

    def micro_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The batches the DataLoader yields in the whole run: one epoch's, E times over."""
        return self.epoch.micro_batches() * self.epochs

    @cached_property
    def all_windows(self) -> list[range]:
        """Per epoch, consecutive windows of k batches (the last of each epoch may be shorter)."""
        n = len(self.epoch_sizes)
        return [
            range(epoch * n + start, epoch * n + min(start + self.k, n))
            for epoch in range(self.epochs)
            for start in range(0, n, self.k)
        ]

    @cached_property
    def windows(self) -> list[range]:
        """Every window is stepped (the frameworks step a short last window)."""
        return self.all_windows

    def __repr__(self) -> str:
        sizes = list(self.epoch_sizes)
        windows = " | ".join(
            ", ".join(str(self.case.sizes[j]) for j in window)
            for window in self.all_windows[: len(self.all_windows) // self.epochs]
        )
        tokens = isinstance(self.case, UserCase)
        lengths = tokens and self.case.factory is TOKEN_MODEL
        counted = f" holding {self.epoch.counts()} counted tokens" if tokens else ""
        parts = [
            self.call or f"batch_size={self.batch_size}, k={self.k}, epochs={self.epochs}",
            f"dataset of {self.rows_per_epoch} {'sequence' if tokens else 'row'}{'s' if self.rows_per_epoch != 1 else ''}"
            + (f" of lengths {self.lengths}" if lengths else "")
            + f" → batches {sizes}{counted}, windows [{windows}]"
            + (f" in each of {self.epochs} epochs" if self.epochs > 1 else ""),
            f"model {self.case.model if tokens else repr(self.case.model)}, "
            + (f"{self.loss!r}, " if tokens else "")
            + f"{dtype_name(self.case.dtype)}, seed {self.case.seed}",
            repr(self.optimizer),
        ]
        return "; ".join(parts)

    @property
    def lengths(self) -> tuple[int, ...]:
        """Each token sequence's length (its tokens before the padding); the rows' count for regression rows."""
        if not isinstance(self.case, UserCase):
            return (1,) * self.rows_per_epoch
        x = self.case.data[0]
        return tuple(int(n) for n in (x != PAD).sum(dim=1))


def epoch_by_epoch_reference(example: FrameworkCase):
    """The full-batch reference run once per epoch on the same model and optimizer: windows restart at every epoch."""
    n = len(example.epoch_sizes)

    def reference(model, optimizer, micro_batches, loss_fn, accumulation_steps):
        for epoch in range(example.epochs):
            full_batch_steps(model, optimizer, micro_batches[epoch * n : (epoch + 1) * n], loss_fn, accumulation_steps)

    return reference


class FrameworkObservation(Observation):
    """The recipe checker's Observation of a framework run, with the reference stepping each epoch's windows."""

    @classmethod
    def of_run(cls, run: Run, example: FrameworkCase) -> "FrameworkObservation":
        """The observation of a run recorded elsewhere (in a framework's own processes), judged like one watched here."""
        observation = cls.__new__(cls)
        observation.recipe, observation.example, observation.run, observation._expected = None, example, run, {}
        return observation

    @cached_property
    def reference(self) -> Run:
        return observe(epoch_by_epoch_reference(self.example), self.example)


def framework_cases(
    describe,
    *,
    models: tuple[str, ...] = MODEL_KINDS,
    max_rows: int = 8,
    max_batch_size: int = 3,
    max_k: int = 3,
    max_epochs: int = 2,
) -> st.SearchStrategy[FrameworkCase]:
    """Dataset size N (so the last batch is short and the last window partial), B, k, epochs, model, seed.

    `describe(example)` states the framework call for the drawn example (it becomes `example.call`).
    """
    models_strategy = model_specs(list(models), max_features=3, large_features=3, sparse=False, layouts=["contiguous"])

    @st.composite
    def draw(draw_) -> FrameworkCase:
        rows, batch_size = draw_(st.integers(1, max_rows)), draw_(st.integers(1, max_batch_size))
        k, epochs, seed = draw_(st.integers(1, max_k)), draw_(st.integers(1, max_epochs)), draw_(seeds())
        model = draw_(models_strategy)  # drawn last: shrinking it to Linear does not shift the draws before it
        return with_call(FrameworkCase.of(model, rows, batch_size, k, epochs, seed), describe)

    return draw()


def token_framework_cases(
    describe,
    *,
    max_rows: int = 8,
    max_batch_size: int = 3,
    max_k: int = 3,
    max_epochs: int = 2,
    max_length: int = 5,
) -> st.SearchStrategy[FrameworkCase]:
    """Padded token sequences of drawn lengths (so equal batches count unequal tokens), B, k, epochs, seed."""

    @st.composite
    def draw(draw_) -> FrameworkCase:
        rows, batch_size = draw_(st.integers(1, max_rows)), draw_(st.integers(1, max_batch_size))
        k, epochs, seed = draw_(st.integers(1, max_k)), draw_(st.integers(1, max_epochs)), draw_(seeds())
        lengths = tuple(draw_(st.lists(st.integers(1, max_length), min_size=rows, max_size=rows)))
        return with_call(FrameworkCase.of_tokens(lengths, batch_size, k, epochs, seed), describe)

    return draw()


@dataclass(frozen=True, eq=False)
class UserSetup:
    """The user's model factory, loss (a RecipeLoss), data (a strategy of datasets (x, y)), output reader and dtype;
    `edge_data(lengths)`, when given, builds the dataset of the measured edge set-ups."""

    factory: Callable
    loss: RecipeLoss
    data: st.SearchStrategy
    output: Optional[Callable] = None
    dtype: torch.dtype = torch.float64
    edge_data: Optional[Callable] = None


class LabelledInputs(torch.utils.data.Dataset):
    """A dataset as a Hugging Face model takes it: row i is {"input_ids": x[i], "labels": y[i]}, or a mapping x's keys."""

    def __init__(self, x, y: torch.Tensor):
        self.x, self.y = x if isinstance(x, dict) else {"input_ids": x}, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        return {**{key: value[i] for key, value in self.x.items()}, "labels": self.y[i]}


def user_setup(factory, data, loss, output, dtype: str) -> Optional[UserSetup]:
    """The UserSetup for a framework check's model=, data=, loss=, output= (None without model=): defaults for a causal
    LM (its causal_lm_cross_entropy, causal_lm_sequences over its vocabulary), everything checked up front."""
    from hypothesis.errors import InvalidArgument

    from properties.recipes.examples import DTYPES
    from properties.recipes.losses import as_recipe_loss, causal_lm_cross_entropy
    from properties.recipes.tokens import causal_lm_sequences
    from properties.recipes.user_case import check_factory
    from properties.strategies import as_strategy

    if factory is None:
        if (data, loss, output) != (None, None, None):
            raise InvalidArgument("data=, loss= and output= describe your model: pass model= a factory of it too")
        return None
    check_factory(factory)
    if dtype not in DTYPES:
        raise InvalidArgument(f"dtype={dtype!r} must be one of {tuple(DTYPES)}")
    with torch.random.fork_rng(devices=[]):
        built = factory()
    causal = getattr(built, "loss_type", None) in ("ForCausalLM", None) and hasattr(built, "loss_function")
    if loss is None and not causal:
        raise InvalidArgument(f"loss= is needed for {type(built).__name__}: the RecipeLoss its own loss computes")
    if data is None:
        vocab = getattr(getattr(built, "config", None), "vocab_size", None)
        if not causal or vocab is None:
            raise InvalidArgument(f"data= is needed for {type(built).__name__}: a dataset (x, labels) or a strategy of them")
        data = causal_lm_sequences(vocab=vocab)
    recipe_loss = causal_lm_cross_entropy() if loss is None else as_recipe_loss(loss)
    return UserSetup(factory, recipe_loss, as_strategy(data), output, DTYPES[dtype])


def user_framework_cases(
    describe, setup: UserSetup, *, max_batch_size: int = 3, max_k: int = 3, max_epochs: int = 2
) -> st.SearchStrategy[FrameworkCase]:
    """A dataset drawn from the user's data, B, k, epochs, seed; no window counting zero items; the model's forward checked."""

    @st.composite
    def draw(draw_) -> FrameworkCase:
        data = check_dataset(draw_(setup.data))
        batch_size, k = draw_(st.integers(1, max_batch_size)), draw_(st.integers(1, max_k))
        epochs, seed = draw_(st.integers(1, max_epochs)), draw_(seeds())
        example = FrameworkCase.of_user(setup, data, batch_size, k, epochs, seed)
        assume(counts_every_window(example.epoch.micro_batches(), setup.loss, k))
        check_forward(example.case)
        return with_call(example, describe)

    return draw()


def cases_for(configuration) -> st.SearchStrategy[FrameworkCase]:
    """The examples a configuration is checked on: its own, the user's data, token sequences for token data, the suite's rows."""
    if configuration.cases is not None:
        return configuration.cases(configuration.call)
    if configuration.user is not None:
        return user_framework_cases(configuration.call, configuration.user)
    if configuration.data == "tokens":
        return token_framework_cases(configuration.call)
    return framework_cases(configuration.call)


def with_call(example: FrameworkCase, describe) -> FrameworkCase:
    """The example with `call` set to the framework call `describe` states for it."""
    return dataclasses.replace(example, call=describe(example))
