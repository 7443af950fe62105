"""The optimizers a recipe is checked with: SGD, SGD with momentum, Adam, AdamW, each with fixed hyper-parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch

SETTINGS = {
    "SGD": (torch.optim.SGD, {"lr": 0.1}),
    "SGD+momentum": (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}),
    "Adam": (torch.optim.Adam, {"lr": 0.01}),
    "AdamW": (torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.1}),
}
SCHEDULER_GAMMA = 0.5
SCALER_SETTINGS = {"init_scale": 2.0**8, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 1}


@dataclass(frozen=True)
class OptimizerChoice:
    """One of SETTINGS by name; builds a fresh optimizer over the given parameters."""

    name: str

    def build(self, parameters: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        """A new optimizer of this kind over `parameters`."""
        cls, kwargs = SETTINGS[self.name]
        return cls(list(parameters), **kwargs)

    @property
    def lr(self) -> float:
        """The learning rate this choice starts from."""
        return SETTINGS[self.name][1]["lr"]

    def __repr__(self) -> str:
        cls, kwargs = SETTINGS[self.name]
        return f"{cls.__name__}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"


def make_scheduler(optimizer: torch.optim.Optimizer):
    """StepLR(step_size=1, γ=0.5): the learning rate halves at every scheduler.step()."""
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=SCHEDULER_GAMMA)


def make_scaler():
    """A CPU GradScaler: scale 2⁸, ×2 after every finite step (growth_interval=1), ×0.5 after a non-finite one."""
    return torch.amp.GradScaler("cpu", **SCALER_SETTINGS)


def scaler_supported() -> bool:
    """Whether this torch has the device-generic torch.amp.GradScaler that runs on CPU (torch ≥ 2.3)."""
    try:
        make_scaler()
    except (AttributeError, TypeError, RuntimeError):
        return False
    return True
