"""Accelerate: a training loop written against `Accelerator.accumulate()`, run for real on CPU.

An Accelerate "loop" to check is a function written as Accelerate's documentation shows it,
`loop(accelerator, model, optimizer, dataloader, loss_fn, epochs)`: it prepares what it needs
with `accelerator.prepare`, and trains. The checker builds the Accelerator (with
`gradient_accumulation_steps=k`, or a `GradientAccumulationPlugin(num_steps=k, **plugin)`), a
sequential DataLoader of batch size B over the dataset, and hands them over with its own model,
optimizer and loss; Accelerate's global state is fresh for every run and put back afterwards.
"""

from __future__ import annotations

from properties.frameworks.cases import LabelledInputs, user_setup
from properties.frameworks.configuration import FRAMEWORKS, Configuration

FRAMEWORK = FRAMEWORKS["accelerate"]
DOCS = "https://huggingface.co/docs/accelerate/usage_guides/gradient_accumulation"


def accumulate_as_documented(accelerator, model, optimizer, dataloader, loss_fn, epochs):
    """The usage guide's loop: prepare, then every batch inside accumulate(): forward, accelerator.backward, step, zero_grad."""
    model, optimizer, dataloader = accelerator.prepare(model, optimizer, dataloader)
    for _ in range(epochs):
        for inputs, targets in dataloader:
            with accelerator.accumulate(model):
                loss = loss_fn(model(inputs), targets)
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()


def accumulate_hugging_face_way(accelerator, model, optimizer, dataloader, loss_fn, epochs):
    """The usage guide's loop for a Hugging Face model: each batch a dict, `model(**batch).loss` (the batch's mean) through
    accelerator.backward inside accumulate()."""
    model, optimizer, dataloader = accelerator.prepare(model, optimizer, dataloader)
    for _ in range(epochs):
        for batch in dataloader:
            with accelerator.accumulate(model):
                accelerator.backward(model(**batch).loss)
                optimizer.step()
                optimizer.zero_grad()


def without_accumulate(accelerator, model, optimizer, dataloader, loss_fn, epochs):
    """The same loop without `with accelerator.accumulate(model):` — nothing tells the optimizer to skip a step."""
    model, optimizer, dataloader = accelerator.prepare(model, optimizer, dataloader)
    for _ in range(epochs):
        for inputs, targets in dataloader:
            accelerator.backward(loss_fn(model(inputs), targets))
            optimizer.step()
            optimizer.zero_grad()


def dataloader_not_prepared(accelerator, model, optimizer, dataloader, loss_fn, epochs):
    """accumulate() with the model and optimizer prepared but not the dataloader: the end of an epoch goes unnoticed."""
    model, optimizer = accelerator.prepare(model, optimizer)
    for _ in range(epochs):
        for inputs, targets in dataloader:
            with accelerator.accumulate(model):
                accelerator.backward(loss_fn(model(inputs), targets))
                optimizer.step()
                optimizer.zero_grad()


def backward_not_scaled(accelerator, model, optimizer, dataloader, loss_fn, epochs):
    """Inside accumulate(), `loss.backward()` instead of `accelerator.backward(loss)` (as Accelerator.accumulate's docstring example writes it)."""
    model, optimizer, dataloader = accelerator.prepare(model, optimizer, dataloader)
    for _ in range(epochs):
        for inputs, targets in dataloader:
            with accelerator.accumulate(model):
                loss = loss_fn(model(inputs), targets)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()


def accelerate_hints(observation) -> list[str]:
    """Accelerate's prepared optimizer swallows step() and zero_grad() unless the window ends: read the steps that way."""
    example, run = observation.example, observation.run
    got, want = run.step_rows, observation.reference.step_rows
    if got == want:
        return []
    epoch_ends = {
        example.boundaries[window.stop] for window in example.all_windows if window.stop % len(example.epoch_sizes) == 0
    }
    missing = set(want) - set(got)
    if missing and missing <= epoch_ends:
        return [
            "Accelerate's prepared optimizer swallowed the step() that ends the epoch: accumulate() only knows the "
            "dataloader ended when the dataloader went through accelerator.prepare (GradientState.end_of_dataloader), "
            "and sync_with_dataloader=False ignores it"
        ]
    if len(got) == len(example.case.sizes) > len(want):
        return [
            "optimizer.step() ran outside `with accelerator.accumulate(model):`, so the prepared optimizer stepped every "
            "batch: only inside accumulate() does it skip step() and zero_grad() until the window ends"
        ]
    return []


PLUGIN_KEYS = {
    (): "plugin",
    (("sync_each_batch", True),): "plugin-sync-each-batch",
    (("sync_with_dataloader", False),): "plugin-no-dataloader-sync",
}


def setting_key(plugin: dict | None) -> str:
    """The key deviations are registered under: how the Accelerator gets k ('accumulate', 'plugin', 'plugin-…', 'custom')."""
    if plugin is None:
        return "accumulate"
    return PLUGIN_KEYS.get(tuple(sorted(plugin.items())), "custom")


def accelerate(
    loop=accumulate_as_documented,
    *,
    name: str | None = None,
    plugin: dict | None = None,
    user=None,
    **accelerator_kwargs,
) -> Configuration:
    """An Accelerate configuration: `loop(accelerator, model, optimizer, dataloader, loss_fn, epochs)` and how k is set.

    plugin=None: Accelerator(gradient_accumulation_steps=k); plugin={...}: Accelerator(gradient_accumulation_plugin=
    GradientAccumulationPlugin(num_steps=k, **plugin)). The key deviations are registered under is that setting
    (with other Accelerator options: 'custom', under which none is registered). With `user` (a cases.UserSetup) the
    dataloader yields the user's rows as dicts ({"input_ids", …, "labels"}) and the loop trains the user's model.
    """
    key = setting_key(plugin) if not accelerator_kwargs else "custom"

    def run(example, model, optimizer, dataset, loss_fn, directory):
        from accelerate import Accelerator
        from accelerate.utils import GradientAccumulationPlugin
        from torch.utils.data import DataLoader, TensorDataset

        if plugin is None:
            accelerator = Accelerator(
                cpu=True, gradient_accumulation_steps=example.k, project_dir=directory, **accelerator_kwargs
            )
        else:
            settings = GradientAccumulationPlugin(num_steps=example.k, **plugin)
            accelerator = Accelerator(
                cpu=True, gradient_accumulation_plugin=settings, project_dir=directory, **accelerator_kwargs
            )
        rows = TensorDataset(*dataset) if user is None else LabelledInputs(*dataset)
        loader = DataLoader(rows, batch_size=example.batch_size, shuffle=False)
        loop(accelerator, model, optimizer, loader, loss_fn, epochs=example.epochs)

    extra = "".join(f", {k}={v!r}" for k, v in accelerator_kwargs.items())
    loop_name = getattr(loop, "__name__", repr(loop))

    def call(example) -> str:
        if plugin is None:
            setting = f"gradient_accumulation_steps={example.k}"
        else:
            options = "".join(f", {k}={v!r}" for k, v in plugin.items())
            setting = f"gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps={example.k}{options})"
        return f"{loop_name}(Accelerator({setting}{extra}), DataLoader(dataset, batch_size={example.batch_size}), epochs={example.epochs})"

    how = (
        "gradient_accumulation_steps=k"
        if plugin is None
        else "GradientAccumulationPlugin(" + ", ".join(["num_steps=k"] + [f"{k}={v!r}" for k, v in plugin.items()]) + ")"
    )
    return Configuration(
        FRAMEWORK,
        key,
        name or f"Accelerator({how}), {loop_name}",
        run,
        call,
        documented=(
            "accumulate() skips the prepared optimizer's step() and zero_grad() until k batches or the end of the prepared "
            "dataloader; backward() divides the loss by gradient_accumulation_steps"
        ),
        source=DOCS,
        hints=accelerate_hints,
        data="rows" if user is None else "model",
        user=user,
    )


CONFIGURATIONS = (
    accelerate(name="Accelerator(gradient_accumulation_steps=k), accumulate() as documented"),
    accelerate(plugin={}, name="GradientAccumulationPlugin(num_steps=k), accumulate() as documented"),
    accelerate(
        plugin={"sync_each_batch": True},
        name="GradientAccumulationPlugin(num_steps=k, sync_each_batch=True), accumulate() as documented",
    ),
    accelerate(
        plugin={"sync_with_dataloader": False},
        name="GradientAccumulationPlugin(num_steps=k, sync_with_dataloader=False), accumulate() as documented",
    ),
)


def check_accelerate(
    loop=None,
    *,
    model=None,
    data=None,
    loss=None,
    output=None,
    dtype: str = "float64",
    max_examples: int = 30,
    plugin: dict | None = None,
    **accelerator_kwargs,
):
    """Check an Accelerate loop `loop(accelerator, model, optimizer, dataloader, loss_fn, epochs)`; with model= a factory
    of your model (a Hugging Face model as it is), data= and loss= (as check_trainer's), on batches of dicts — by default
    with the usage guide's Hugging Face loop (`accelerator.backward(model(**batch).loss)`).

    Raises FrameworkError with the shrunk counterexample, or KnownDeviation when only a registered
    Accelerate deviation fails; returns the Conformance otherwise.
    """
    __tracebackhide__ = True
    from properties.frameworks.check import check_framework

    user = user_setup(model, data, loss, output, dtype)
    default = accumulate_as_documented if user is None else accumulate_hugging_face_way
    configuration = accelerate(loop or default, plugin=plugin, user=user, **accelerator_kwargs)
    return check_framework(configuration, max_examples=max_examples)
