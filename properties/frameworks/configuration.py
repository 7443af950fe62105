"""A framework, a configuration of it, and a run of that configuration as a procedure the recipe checker observes.

A `Configuration` runs the real framework on one `FrameworkCase`: it is handed the model, the
optimizer and the dataset the checker built, trains the way the framework's documentation shows,
and returns. `FrameworkRun` binds it to the example so that it is called like any recipe
(`recipe(model, optimizer, micro_batches, loss_fn, k)`): the checker's hooks on the model and the
optimizer see every batch and every optimizer step, whoever makes them.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass, field
from typing import Callable, Optional

INSTALL_HINT = 'python -m pip install -e ".[frameworks]"'


@dataclass(frozen=True)
class Framework:
    """A training framework: its pip distribution and import name; its installed version is read, never imported."""

    distribution: str
    module: str

    def version(self) -> str | None:
        """The installed distribution's version, or None when it is not installed."""
        try:
            return importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return None

    def missing(self) -> str | None:
        """Why the framework cannot be checked here (not installed, or the installed torch below its torch floor), or None."""
        if importlib.util.find_spec(self.module) is None or self.version() is None:
            return f"{self.distribution} is not installed: {INSTALL_HINT} installs the pinned framework versions"
        return self.torch_refused()

    def torch_floor(self) -> str | None:
        """The torch versions the installed release declares it runs on ('>=2.6'), or None where it declares none:
        its requirement on torch, unconditional or under its own `torch` extra. transformers 5 puts it in that extra,
        so pip installs it beside an older torch, and below it transformers disables its PyTorch models
        (`GPT2LMHeadModel requires PyTorch >= 2.6`)."""
        from packaging.requirements import InvalidRequirement, Requirement

        floors = []
        for text in importlib.metadata.requires(self.distribution) or ():
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                continue
            if requirement.name == "torch" and str(requirement.specifier):
                if requirement.marker is None or requirement.marker.evaluate({"extra": "torch"}):
                    floors.append(str(requirement.specifier))
        return ",".join(dict.fromkeys(floors)) or None

    def torch_refused(self) -> str | None:
        """Why the installed torch is outside the framework's declared torch versions, or None (read from metadata)."""
        from packaging.specifiers import SpecifierSet
        from packaging.version import InvalidVersion, Version

        floor = self.torch_floor()
        try:
            torch_version = importlib.metadata.version("torch")
            release = Version(torch_version).base_version  # '2.1.2+cu121' → '2.1.2'
        except (importlib.metadata.PackageNotFoundError, InvalidVersion):
            return None
        if floor is None or SpecifierSet(floor).contains(release, prereleases=True):
            return None
        return (
            f"{self.distribution} {self.version()} needs torch{floor} and torch {torch_version} is installed (below it "
            f"{self.distribution} does not run its PyTorch code): install torch{floor} beside it, or a "
            f"{self.distribution} release that supports torch {release}"
        )

    def __str__(self) -> str:
        return f"{self.distribution} {self.version() or '(not installed)'}"


FRAMEWORKS = {
    framework.distribution: framework
    for framework in (
        Framework("transformers", "transformers"),
        Framework("pytorch-lightning", "pytorch_lightning"),
        Framework("accelerate", "accelerate"),
        Framework("deepspeed", "deepspeed"),
    )
}


@dataclass(frozen=True)
class Configuration:
    """One way of training with a framework, as its documentation shows it.

    `run(example, model, optimizer, dataset, loss_fn, directory)` trains `model` with the framework on
    the `dataset` (x, y) for `example.epochs` epochs in batches of `example.batch_size`, k a window;
    `call(example)` states that set-up in the framework's own terms; `documented` says what the
    framework documents for it and `source` where; `hints(observation)` adds likely causes in the
    framework's terms to a failure; `unavailable()` says why the installed version cannot run it (None: it can), e.g. a
    loss path an older release lacks. `data` is what the checker draws for it: "rows" (the suite's models
    on regression rows, loss = MSE), "tokens" (padded token sequences with ignore_index labels, a
    token model, loss = cross-entropy over the counted tokens) or "model" (the user's model, loss and
    data, `user`: a cases.UserSetup, the model handed to the framework as it is). A framework that trains in
    other processes (DeepSpeed's ranks) gives `observe(example)`, the FrameworkObservation of a run it recorded
    there, `cases(call)`, the strategy of its examples, and `edges(call)`, its measured edge examples.
    """

    framework: Framework
    key: str
    name: str
    run: Callable
    call: Callable
    documented: str
    source: str
    hints: Optional[Callable] = field(default=None, compare=False)
    data: str = "rows"
    user: Optional[object] = field(default=None, compare=False)
    observe: Optional[Callable] = field(default=None, compare=False)
    cases: Optional[Callable] = field(default=None, compare=False)
    edges: Optional[Callable] = field(default=None, compare=False)
    unavailable: Optional[Callable[[], Optional[str]]] = field(default=None, compare=False)

    def missing(self) -> Optional[str]:
        """Why this configuration cannot be checked here: the framework is not installed, or its version lacks it; or None."""
        reason = self.framework.missing()
        if reason is None and self.unavailable is not None:
            reason = self.unavailable()
        return reason

    @property
    def label(self) -> str:
        """'pytorch-lightning: Trainer(accumulate_grad_batches=k), module as documented'."""
        return f"{self.framework.distribution}: {self.name}"

    @property
    def id(self) -> str:
        """'transformers:num-items', with ':tokens' added for token data."""
        return f"{self.framework.distribution}:{self.key}" + ("" if self.data == "rows" else f":{self.data}")

    def __repr__(self) -> str:
        return self.id


class NotAvailable(RuntimeError):
    """The installed framework version lacks what a configuration uses (`Configuration.unavailable` says what)."""


class FrameworkRun:
    """A configuration bound to one example, callable as a recipe: the recipe checker observes it like any loop."""

    def __init__(self, configuration: Configuration, example):
        self.configuration = configuration
        self.example = example

    def __call__(self, model, optimizer, micro_batches, loss_fn, accumulation_steps) -> None:
        import importlib

        import torch

        from properties.frameworks.sandbox import isolated

        importlib.import_module(self.configuration.framework.module)  # its import configures its loggers: before the sandbox

        example = self.example
        if accumulation_steps != example.k or len(micro_batches) != len(example.epoch_sizes) * example.epochs:
            raise ValueError(
                f"{self!r} is bound to {example!r}, not to these {len(micro_batches)} micro-batches and k={accumulation_steps}"
            )
        from properties.recipes import batches

        epoch = micro_batches[: len(example.epoch_sizes)]
        dataset = (batches.cat([x for x, _ in epoch]), torch.cat([y for _, y in epoch]))
        with isolated() as isolation:
            self.configuration.run(example, model, optimizer, dataset, loss_fn, isolation.directory)

    def __repr__(self) -> str:
        framework = self.configuration.framework
        return f"{framework.distribution} {framework.version() or ''} {self.configuration.name}".replace("  ", " ")
