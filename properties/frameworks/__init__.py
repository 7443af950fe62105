"""Check the frameworks people accumulate gradients with: the transformers Trainer, Lightning's Trainer, Accelerate, DeepSpeed.

Each adapter runs the real framework on CPU on an example the recipe checker draws, and the recipe
checker observes and judges the run: one optimizer step per window, each step's .grad the
gradient of the window's mean loss, the final parameters those of one full-batch step per window.

    from properties.frameworks import check_lightning, check_trainer, check_accelerate, check_deepspeed

Importing this package imports neither torch nor any framework; a framework loads on first use,
and `missing(name)` says why one cannot be checked here (not installed).
"""

from __future__ import annotations

import importlib

MODULES = {
    "transformers": "properties.frameworks.transformers_trainer",
    "pytorch-lightning": "properties.frameworks.lightning_trainer",
    "accelerate": "properties.frameworks.accelerate_loop",
    "deepspeed": "properties.frameworks.deepspeed_engine",
}
LAZY = {
    "check_trainer": "properties.frameworks.transformers_trainer",
    "check_lightning": "properties.frameworks.lightning_trainer",
    "check_accelerate": "properties.frameworks.accelerate_loop",
    "check_deepspeed": "properties.frameworks.deepspeed_engine",
    "check_framework": "properties.frameworks.check",
    "check_configuration": "properties.frameworks.check",
    "FrameworkError": "properties.frameworks.check",
    "KnownDeviation": "properties.frameworks.check",
    "DEVIATIONS": "properties.frameworks.deviations",
}


def module(name: str):
    """The adapter module of framework `name` ('transformers', 'pytorch-lightning', 'accelerate', 'deepspeed')."""
    return importlib.import_module(MODULES[name])


def missing(name: str) -> str | None:
    """Why framework `name` cannot be checked here (not installed), or None; reads the installed metadata, imports nothing."""
    from properties.frameworks.configuration import FRAMEWORKS

    return FRAMEWORKS[name].missing()


def configurations(name: str | None = None) -> tuple:
    """The bundled configurations of framework `name`, or of every framework."""
    names = [name] if name is not None else list(MODULES)
    return tuple(configuration for each in names for configuration in module(each).CONFIGURATIONS)


def __getattr__(name: str):
    """Load the torch-backed names on first use."""
    if name in LAZY:
        return getattr(importlib.import_module(LAZY[name]), name)
    raise AttributeError(f"module 'properties.frameworks' has no attribute {name!r}")


__all__ = ["missing", "configurations", "module", "MODULES", *LAZY]
