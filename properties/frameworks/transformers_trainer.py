"""transformers: `Trainer(model, TrainingArguments(per_device_train_batch_size=B, gradient_accumulation_steps=k)).train()` on CPU.

A transformers set-up to check is a model class written as the Trainer documentation asks,
`model_class(module)` around the checker's model: `forward(x, labels=None, …)` returns a dict
with "loss". Two loss paths are bundled: a model that takes `num_items_in_batch` and divides the
summed loss by it (the documented way), and one whose loss is the batch's mean
(`accepts_loss_kwargs = False`). A `compute_loss_func` (the Trainer's other documented way) can
be passed instead. The same two loss paths are bundled for a token model on padded sequences whose
labels are ignore_index (-100) on padding: cross-entropy summed over the counted tokens and divided
by num_items_in_batch (the window's count of labels ≠ -100, as the Trainer computes it), and the
per-batch mean over counted tokens. The Trainer gets the checker's optimizer, a constant learning rate, no warm-up,
weight decay or clipping (max_grad_norm=0), sequential sampling, no logging, saving or reporting.

Older releases are checked too (the conformance report's several versions): before 4.46.0 the
Trainer passes no num_items_in_batch and takes no compute_loss_func, so the configurations of that
loss path say they are not available there (`NUM_ITEMS_SINCE`); a TrainingArguments without
train_sampling_strategy (before 5.2.0) gets sequential sampling from a Trainer whose
_get_train_sampler returns a SequentialSampler, the only difference in how the run is set up.
"""

from __future__ import annotations

import torch
from torch import nn

from properties.frameworks.cases import LabelledInputs, user_setup
from properties.frameworks.configuration import FRAMEWORKS, Configuration
from properties.frameworks.hf_models import TinyGPT2, TinyLlama
from properties.versions import within

FRAMEWORK = FRAMEWORKS["transformers"]
DOCS = "https://huggingface.co/docs/transformers/en/grad_accumulation"
NUM_ITEMS_SINCE = "4.46.0"
"""The first release whose Trainer passes num_items_in_batch and takes compute_loss_func (4.45.2's trainer.py names neither)."""


def squared_errors(out, labels, reduction: str = "mean"):
    """Squared errors over every element: their mean, or their sum."""
    return nn.functional.mse_loss(out, labels, reduction=reduction)


def token_loss(logits, labels, reduction: str = "mean"):
    """Cross-entropy over the labels ≠ -100 (the Trainer's ignore index): their mean, or their sum."""
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction=reduction)


class ItemCountRegressor(nn.Module):
    """Loss = Σ squared errors ÷ num_items_in_batch, the window's label count the Trainer passes (the documented way)."""

    accepts_loss_kwargs = True
    loss = staticmethod(squared_errors)

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x, labels=None, num_items_in_batch=None):
        out = self.module(x)
        if labels is None:
            return {"logits": out}
        if num_items_in_batch is None:
            return {"loss": self.loss(out, labels), "logits": out}
        return {"loss": self.loss(out, labels, "sum") / num_items_in_batch, "logits": out}


class MeanLossRegressor(nn.Module):
    """Loss = the batch's mean squared error; the model takes no num_items_in_batch (accepts_loss_kwargs = False)."""

    accepts_loss_kwargs = False
    loss = staticmethod(squared_errors)

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x, labels=None):
        out = self.module(x)
        return {"logits": out} if labels is None else {"loss": self.loss(out, labels), "logits": out}


class ClaimsItemCount(MeanLossRegressor):
    """Says it takes the loss kwargs (so the Trainer does not divide) but returns the batch's mean: k× the gradient."""

    accepts_loss_kwargs = True

    def forward(self, x, labels=None, num_items_in_batch=None):
        return super().forward(x, labels)


class ItemCountTokenModel(ItemCountRegressor):
    """Loss = Σ token cross-entropy over labels ≠ -100 ÷ num_items_in_batch, the window's count of such labels."""

    loss = staticmethod(token_loss)


class MeanTokenModel(MeanLossRegressor):
    """Loss = the batch's mean token cross-entropy over its labels ≠ -100; takes no num_items_in_batch."""

    loss = staticmethod(token_loss)


class LogitsRegressor(nn.Module):
    """Returns the prediction only; the loss is the Trainer's compute_loss_func."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return self.module(x)


def summed_over_items(outputs, labels, num_items_in_batch=None):
    """compute_loss_func: Σ squared errors ÷ num_items_in_batch (the batch's mean when the Trainer passes none)."""
    if num_items_in_batch is None:
        return nn.functional.mse_loss(outputs, labels)
    return nn.functional.mse_loss(outputs, labels, reduction="sum") / num_items_in_batch


class Rows(torch.utils.data.Dataset):
    """The dataset as the Trainer reads it: row i is {"x": x[i], "labels": y[i]}."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "labels": self.y[i]}


FIXED_ARGUMENTS = dict(
    lr_scheduler_type="constant",
    warmup_steps=0,
    weight_decay=0.0,
    max_grad_norm=0.0,
    train_sampling_strategy="sequential",
    report_to="none",
    save_strategy="no",
    logging_strategy="no",
    disable_tqdm=True,
    use_cpu=True,
    dataloader_num_workers=0,
    dataloader_pin_memory=False,
)


def sequential(trainer_class):
    """`trainer_class` with a SequentialSampler, for a TrainingArguments that has no train_sampling_strategy (before 5.2.0)."""
    import dataclasses

    from transformers import TrainingArguments

    if any(f.name == "train_sampling_strategy" for f in dataclasses.fields(TrainingArguments)):
        return trainer_class, FIXED_ARGUMENTS

    def _get_train_sampler(self, *args, **kwargs):
        return torch.utils.data.SequentialSampler(self.train_dataset)

    subclass = type(trainer_class.__name__, (trainer_class,), {"_get_train_sampler": _get_train_sampler})
    return subclass, {k: v for k, v in FIXED_ARGUMENTS.items() if k != "train_sampling_strategy"}


def unavailable(key: str):
    """Why a configuration under loss path `key` cannot run on the installed transformers (None: it can)."""

    def reason() -> str | None:
        version = FRAMEWORK.version()
        if key.split(":")[0] in ("num-items", "compute-loss-func") and version and not within(version, NUM_ITEMS_SINCE, None):
            return (
                f"not available in transformers {version}: its Trainer passes no num_items_in_batch and takes no "
                f"compute_loss_func (both since {NUM_ITEMS_SINCE})"
            )
        return None

    return reason


def takes_loss_kwargs(model_class) -> bool:
    """What the Trainer decides: the model's `accepts_loss_kwargs` if it has one, else whether forward takes **kwargs."""
    import inspect

    if hasattr(model_class, "accepts_loss_kwargs"):
        return bool(model_class.accepts_loss_kwargs)
    forward = getattr(model_class, "forward", None)
    if forward is None:
        return False
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(forward).parameters.values())


def loss_path(model_class, compute_loss_func, trainer_class) -> str:
    """The key deviations are registered under: the Trainer's loss path ('num-items', 'mean-loss', 'compute-loss-func').

    A Trainer subclass may compute the loss its own way: 'custom', under which none is registered.
    """
    if trainer_class is not None:
        return "custom"
    if compute_loss_func is not None:
        return "compute-loss-func"
    return "num-items" if takes_loss_kwargs(model_class) else "mean-loss"


NO_LOSS_TYPE = ":no-loss-type"
"""Added to the loss path of a Hugging Face model whose loss_type is None: the Trainer then counts unshifted labels."""


def user_loss_path(setup) -> str:
    """The Trainer's loss path for the model the user's factory builds (built once, torch's generator given back)."""
    with torch.random.fork_rng(devices=[]):
        model = setup.factory()
    untyped = hasattr(model, "loss_type") and model.loss_type is None
    return loss_path(type(model), None, None) + (NO_LOSS_TYPE if untyped else "")


def trainer(
    model_class=ItemCountRegressor,
    *,
    name: str | None = None,
    trainer_class=None,
    compute_loss_func=None,
    data: str = "rows",
    user=None,
    key: str | None = None,
    **training_arguments,
) -> Configuration:
    """A Trainer configuration: `model_class(module)` (or the model plus a compute_loss_func), TrainingArguments options;
    with `user` (a cases.UserSetup) the user's model itself, its own loss path, on the user's data.

    The key deviations are registered under is the Trainer's loss path for this model (see loss_path);
    data="tokens" checks it on padded token sequences (the model's loss a token cross-entropy).
    """
    if user is not None:
        data, key = "model", key or user_loss_path(user)
    key = key or loss_path(model_class, compute_loss_func, trainer_class)

    def run(example, model, optimizer, dataset, loss_fn, directory):
        from transformers import Trainer, TrainingArguments

        cls, fixed = sequential(trainer_class or Trainer)
        arguments = {**fixed, **training_arguments}
        args = TrainingArguments(
            output_dir=directory,
            per_device_train_batch_size=example.batch_size,
            gradient_accumulation_steps=example.k,
            num_train_epochs=example.epochs,
            **arguments,
        )
        extra = {} if compute_loss_func is None else {"compute_loss_func": compute_loss_func}
        trained, rows = (model, LabelledInputs(*dataset)) if user is not None else (model_class(model), Rows(*dataset))
        cls(model=trained, args=args, train_dataset=rows, optimizers=(optimizer, None), **extra).train()

    shown = repr(user.factory) if user is not None else getattr(model_class, "__name__", repr(model_class))
    loss = f", compute_loss_func={compute_loss_func.__name__}" if compute_loss_func is not None else ""
    options = "".join(f", {k}={v!r}" for k, v in training_arguments.items())
    trainer_name = getattr(trainer_class, "__name__", "Trainer")

    def call(example) -> str:
        return (
            f"{trainer_name}(model={shown if user is not None else shown + '(model)'}, args=TrainingArguments(per_device_train_batch_size={example.batch_size}, "
            f"gradient_accumulation_steps={example.k}, num_train_epochs={example.epochs}{options}){loss}).train()"
        )

    return Configuration(
        FRAMEWORK,
        key,
        name or f"{trainer_name}, {shown}{loss}",
        run,
        call,
        documented=(
            "a loss normalised by num_items_in_batch (the model's, or compute_loss_func's) is the window's mean; a per-batch "
            "mean loss is divided by the number of batches in the window"
        ),
        source=DOCS,
        data=data,
        user=user,
        unavailable=unavailable(key),
    )


def real_causal_lm(factory, key: str, name: str) -> Configuration:
    """A tiny Hugging Face causal LM, untouched, under the Trainer with its own loss, on causal-LM sequences."""
    from properties.frameworks.cases import UserSetup
    from properties.frameworks.hf_models import causal_lm_data, causal_lm_edge_data
    from properties.recipes.losses import causal_lm_cross_entropy

    setup = UserSetup(factory, causal_lm_cross_entropy(), causal_lm_data(), edge_data=causal_lm_edge_data)
    return trainer(user=setup, key=key, name=name)


CONFIGURATIONS = (
    trainer(ItemCountRegressor, name="Trainer, model's loss = sum ÷ num_items_in_batch"),
    trainer(MeanLossRegressor, name="Trainer, model's loss ignores num_items_in_batch (accepts_loss_kwargs = False)"),
    trainer(
        LogitsRegressor,
        compute_loss_func=summed_over_items,
        label_names=["labels"],
        name="Trainer(compute_loss_func=sum ÷ num_items_in_batch)",
    ),
    trainer(
        ItemCountTokenModel,
        data="tokens",
        name="Trainer, padded tokens, model's loss = Σ token CE ÷ num_items_in_batch",
    ),
    trainer(
        MeanTokenModel,
        data="tokens",
        name="Trainer, padded tokens, model's loss = per-batch mean token CE (accepts_loss_kwargs = False)",
    ),
    real_causal_lm(
        TinyGPT2(), "num-items" + NO_LOSS_TYPE, "Trainer, GPT-2 from config, its own causal-LM loss (num_items_in_batch)"
    ),
    real_causal_lm(TinyLlama(), "num-items", "Trainer, Llama from config, its own causal-LM loss (num_items_in_batch)"),
    real_causal_lm(
        TinyGPT2(mean_loss=True), "mean-loss", "Trainer, GPT-2 from config, per-batch mean loss (accepts_loss_kwargs = False)"
    ),
)


def check_trainer(
    model_class=ItemCountRegressor,
    *,
    model=None,
    data=None,
    loss=None,
    output=None,
    dtype: str = "float64",
    max_examples: int = 30,
    **options,
):
    """Check a model class (`model_class(module)`; forward(x, labels, …) → {"loss": …}) under the transformers Trainer, or
    with model= a factory of your own model (a Hugging Face model as it is) trained with its own loss path.

    With model=: data= a dataset (x, labels) or a strategy of them (x a tensor, passed as input_ids, or a mapping of
    keyword → tensor), loss= the loss the model computes as a RecipeLoss (default: causal_lm_cross_entropy() for a
    causal LM); the default data for a causal LM is causal_lm_sequences() over its vocabulary. Options: trainer_class,
    compute_loss_func, and TrainingArguments. Raises FrameworkError with the shrunk counterexample, or KnownDeviation
    when only a registered transformers deviation fails.
    """
    __tracebackhide__ = True
    from properties.frameworks.check import check_framework

    options["user"] = user_setup(model, data, loss, output, dtype)
    return check_framework(trainer(model_class, **options), max_examples=max_examples)
