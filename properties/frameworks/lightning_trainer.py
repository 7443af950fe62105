"""PyTorch Lightning: `Trainer(accumulate_grad_batches=k).fit(module, DataLoader(dataset, batch_size=B))`, run for real on CPU.

A Lightning "loop" to check is a LightningModule written as Lightning's documentation shows it
(`training_step` returns the batch's loss, `configure_optimizers` returns the optimizer), built by
`module(model, optimizer, loss_fn)` around the checker's model and optimizer. The Trainer runs
with a sequential DataLoader, no logger, checkpoints, progress bar, sanity check, clipping or
scheduler; accumulation is Lightning's own.

Lightning steps through the closure: `optimizer.step(closure)` runs the batch's training_step and
backward *inside* torch's step, after torch's step pre-hooks. For the checker to see the
gradient the step uses, the run hands the optimizer a `step` that calls the closure first and
then the optimizer's own step without it — what SGD, Adam and AdamW do first thing anyway.
"""

from __future__ import annotations

import contextlib
from functools import lru_cache

import torch

from properties.frameworks.cases import LabelledInputs, user_setup
from properties.frameworks.configuration import FRAMEWORKS, Configuration

FRAMEWORK = FRAMEWORKS["pytorch-lightning"]
DOCS = "https://lightning.ai/docs/pytorch/stable/common/gradient_accumulation.html"


@lru_cache(maxsize=None)
def modules() -> dict[str, type]:
    """The bundled LightningModules (defined on first use: importing Lightning takes seconds)."""
    import pytorch_lightning as pl

    class Regressor(pl.LightningModule):
        """The documented module: training_step returns the batch's mean loss; configure_optimizers the optimizer."""

        def __init__(self, model, optimizer, loss_fn):
            super().__init__()
            self.model = model
            self.sgd = optimizer
            self.loss_fn = loss_fn

        def training_step(self, batch, batch_idx):
            x, y = batch
            return self.loss_fn(self.model(x), y)

        def configure_optimizers(self):
            return self.sgd

    class DividesByK(Regressor):
        """A module that divides its loss by accumulate_grad_batches itself (Lightning already does): 1/k² per batch."""

        def training_step(self, batch, batch_idx):
            return super().training_step(batch, batch_idx) / self.trainer.accumulate_grad_batches

    class HuggingFace(Regressor):
        """The documented module around a Hugging Face model: each batch a dict, training_step returns model(**batch).loss."""

        def training_step(self, batch, batch_idx):
            return self.model(**batch).loss

    return {"Regressor": Regressor, "DividesByK": DividesByK, "HuggingFace": HuggingFace}


@contextlib.contextmanager
def closure_before_step(optimizer: torch.optim.Optimizer):
    """optimizer.step(closure) runs the closure first, then the optimizer's step (and its hooks) without it."""
    had_own = "step" in vars(optimizer)
    own = vars(optimizer).get("step")
    original = optimizer.step

    def step(closure=None, **kwargs):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        original(**kwargs)
        return loss

    optimizer.step = step
    try:
        yield
    finally:
        if had_own:
            optimizer.step = own
        else:
            del optimizer.step


def module_name(module) -> str:
    return getattr(module, "__name__", None) or type(module).__name__


def lightning(module="Regressor", *, name: str | None = None, user=None, **trainer_kwargs) -> Configuration:
    """A Lightning configuration: `module(model, optimizer, loss_fn)` (a LightningModule class or factory), Trainer options.

    `module` may name a bundled module ("Regressor", "DividesByK"). The setting, whatever the module,
    is Trainer(accumulate_grad_batches=k): the key deviations are registered under. With `user` (a cases.UserSetup)
    the module trains the user's model on the user's rows as dicts ({"input_ids", …, "labels"}).
    """

    def build(model, optimizer, loss_fn):
        factory = modules()[module] if isinstance(module, str) else module
        return factory(model, optimizer, loss_fn)

    def run(example, model, optimizer, dataset, loss_fn, directory):
        import pytorch_lightning as pl
        from torch.utils.data import DataLoader, TensorDataset

        trainer = pl.Trainer(
            accumulate_grad_batches=example.k,
            max_epochs=example.epochs,
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            default_root_dir=directory,
            **trainer_kwargs,
        )
        rows = TensorDataset(*dataset) if user is None else LabelledInputs(*dataset)
        loader = DataLoader(rows, batch_size=example.batch_size, shuffle=False)
        with closure_before_step(optimizer):
            trainer.fit(build(model, optimizer, loss_fn), loader)

    shown = module if isinstance(module, str) else module_name(module)
    extra = "".join(f", {k}={v!r}" for k, v in trainer_kwargs.items())

    def call(example) -> str:
        return (
            f"Trainer(accumulate_grad_batches={example.k}, max_epochs={example.epochs}{extra})"
            f".fit({shown}(model), DataLoader(dataset, batch_size={example.batch_size}))"
        )

    return Configuration(
        FRAMEWORK,
        "accumulate_grad_batches",
        name or f"Trainer(accumulate_grad_batches=k), {shown}",
        run,
        call,
        documented="accumulate_grad_batches: 'Accumulates gradients over k batches before stepping the optimizer'",
        source=DOCS,
        data="rows" if user is None else "model",
        user=user,
    )


CONFIGURATIONS = (lightning("Regressor", name="Trainer(accumulate_grad_batches=k), LightningModule as documented"),)


def check_lightning(
    module=None,
    *,
    model=None,
    data=None,
    loss=None,
    output=None,
    dtype: str = "float64",
    max_examples: int = 30,
    **trainer_kwargs,
):
    """Check a LightningModule (`module(model, optimizer, loss_fn)`) under Trainer(accumulate_grad_batches=k, …); with
    model= a factory of your model (a Hugging Face model as it is), data= and loss= (as check_trainer's), on batches of
    dicts — by default with the bundled "HuggingFace" module (training_step returns model(**batch).loss).

    Raises FrameworkError with the shrunk counterexample, or KnownDeviation when only Lightning's
    registered partial-window deviation fails; returns the Conformance otherwise.
    """
    __tracebackhide__ = True
    from properties.frameworks.check import check_framework

    user = user_setup(model, data, loss, output, dtype)
    if module is None and user is None:
        raise TypeError("check_lightning needs a LightningModule class (module(model, optimizer, loss_fn)) or model=")
    configuration = lightning(module or "HuggingFace", user=user, **trainer_kwargs)
    return check_framework(configuration, max_examples=max_examples)
