"""Optimizer specifications: small frozen descriptions that build real `torch.optim` optimizers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.strategies import SearchStrategy
from torch import nn

from properties.lazy import lazy_strategy

DEFAULTS: dict[str, dict[str, Any]] = {
    "SGD": dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False),
    "Adam": dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False),
    "AdamW": dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, maximize=False),
}
NAMES = tuple(DEFAULTS)


@dataclass(frozen=True)
class OptimizerSpec:
    """Which torch.optim class, with which hyper-parameters (those left out take torch's defaults)."""

    name: str
    hyper: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self):
        if self.name not in DEFAULTS:
            raise ValueError(f"unknown optimizer {self.name!r}; expected one of {NAMES}")
        unknown = sorted(set(dict(self.hyper)) - set(DEFAULTS[self.name]))
        if unknown:
            raise ValueError(f"{self.name} has no hyper-parameter {unknown}")

    @classmethod
    def of(cls, name: str, **hyper: Any) -> "OptimizerSpec":
        """OptimizerSpec.of('SGD', lr=0.1, momentum=0.9); values equal to torch's defaults are left out."""
        defaults = DEFAULTS.get(name, {})
        return cls(name, tuple(sorted((k, v) for k, v in hyper.items() if k not in defaults or defaults[k] != v)))

    @property
    def options(self) -> dict[str, Any]:
        """Every hyper-parameter, torch's default where the spec says nothing."""
        return {**DEFAULTS[self.name], **dict(self.hyper)}

    def __getitem__(self, key: str) -> Any:
        return self.options[key]

    def __repr__(self) -> str:
        shown = ", ".join(f"{key}={value!r}" for key, value in self.hyper)
        return f"{self.name}({shown})"

    def _repr_pretty_(self, printer, cycle) -> None:
        """Hypothesis prints a falsifying spec as `SGD(lr=0.1, momentum=0.9)`."""
        printer.text(repr(self))

    def build(self, params: Iterable[torch.Tensor], groups: int = 1) -> torch.optim.Optimizer:
        """The torch optimizer over `params` with these hyper-parameters, in `groups` parameter groups of consecutive parameters."""
        listed = list(params)
        if groups > 1 and len(listed) > 1:
            cuts = [round(i * len(listed) / groups) for i in range(groups + 1)]
            listed = [{"params": listed[a:b]} for a, b in zip(cuts, cuts[1:]) if b > a]
        return getattr(torch.optim, self.name)(listed, **dict(self.hyper))

    def build_for(self, model: nn.Module, groups: int = 1) -> torch.optim.Optimizer:
        """The optimizer over `model`'s trainable parameters (in `groups` parameter groups)."""
        return self.build((p for p in model.parameters() if p.requires_grad), groups)


StateMap = dict[str, dict[str, torch.Tensor]]


def named_state(optimizer: torch.optim.Optimizer, model: nn.Module) -> StateMap:
    """A copy of the optimizer's per-parameter state, keyed by parameter name (step as a float64 scalar)."""
    result: StateMap = {}
    for name, p in model.named_parameters():
        state = optimizer.state.get(p, {})
        result[name] = {
            key: (value.detach().clone() if value.dim() else value.detach().to(torch.float64).clone())
            for key, value in state.items()
            if isinstance(value, torch.Tensor)
        }
    return result


@lazy_strategy
def sgd_specs(*, momentum: bool | None = None, nesterov: bool | None = None) -> SearchStrategy[OptimizerSpec]:
    """SGD with lr, momentum, dampening, Nesterov and weight decay drawn (momentum or Nesterov forced on or off if asked)."""

    @st.composite
    def draw_sgd(draw):
        hyper: dict[str, Any] = {"lr": draw(st.sampled_from([0.1, 0.01, 0.3]))}
        with_nesterov = draw(st.booleans()) if nesterov is None else nesterov
        with_momentum = with_nesterov or (draw(st.booleans()) if momentum is None else momentum)
        if with_momentum:
            hyper["momentum"] = draw(st.sampled_from([0.9, 0.5]))
            hyper["dampening"] = 0.0 if with_nesterov else draw(st.sampled_from([0.0, 0.1]))
            hyper["nesterov"] = with_nesterov
        hyper["weight_decay"] = draw(st.sampled_from([0.0, 0.01]))
        return OptimizerSpec.of("SGD", **hyper)

    return draw_sgd()


@lazy_strategy
def adam_specs(name: str = "Adam") -> SearchStrategy[OptimizerSpec]:
    """Adam or AdamW with lr, betas, weight decay and amsgrad drawn."""
    if name not in ("Adam", "AdamW"):
        raise InvalidArgument(f"name={name!r}: expected 'Adam' or 'AdamW'")

    @st.composite
    def draw_adam(draw):
        return OptimizerSpec.of(
            name,
            lr=draw(st.sampled_from([0.01, 0.1, 0.001])),
            betas=draw(st.sampled_from([(0.9, 0.999), (0.5, 0.9)])),
            weight_decay=draw(st.sampled_from([0.0, 0.1])),
            amsgrad=draw(st.booleans()),
        )

    return draw_adam()


FAMILIES = {
    "SGD": sgd_specs(momentum=False),
    "SGD with momentum": sgd_specs(momentum=True, nesterov=False),
    "SGD with Nesterov momentum": sgd_specs(nesterov=True),
    "Adam": adam_specs("Adam"),
    "AdamW": adam_specs("AdamW"),
}


@lazy_strategy
def optimizer_specs(names: Sequence[str] = NAMES) -> SearchStrategy[OptimizerSpec]:
    """Any of the named optimizers with drawn hyper-parameters; SGD first, so failures shrink to it."""
    choices = {"SGD": sgd_specs(), "Adam": adam_specs("Adam"), "AdamW": adam_specs("AdamW")}
    unknown = [name for name in names if name not in choices] if not isinstance(names, str) else [names]
    if unknown or not names:
        raise InvalidArgument(f"names={names!r}: expected a non-empty sequence of {list(choices)}")
    return st.one_of([choices[name] for name in names])
