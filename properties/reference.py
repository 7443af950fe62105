"""Reference computations: closed-form MSE gradients and optimizer updates (float64, no autograd), full-batch runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from properties import grads as G
from properties.compare import dense
from properties.optimizers import OptimizerSpec, StateMap, named_state

Batch = tuple[torch.Tensor, torch.Tensor]


def array(tensor: torch.Tensor) -> np.ndarray:
    """A float64 numpy copy of the tensor (exact: every float dtype here embeds in float64)."""
    return tensor.detach().to(device="cpu", dtype=torch.float64).numpy().copy()


@dataclass(frozen=True)
class LinearParams:
    """W (d_out × d_in) and b (d_out, or None) of y = Wx + b, as float64 arrays."""

    weight: np.ndarray
    bias: np.ndarray | None

    @classmethod
    def of(cls, linear: nn.Linear) -> "LinearParams":
        """The module's current parameters."""
        return cls(array(linear.weight), None if linear.bias is None else array(linear.bias))

    def named(self) -> dict[str, np.ndarray]:
        """{'weight': W, 'bias': b} (bias left out when there is none)."""
        return {"weight": self.weight} if self.bias is None else {"weight": self.weight, "bias": self.bias}

    def minus(self, step: dict[str, np.ndarray]) -> "LinearParams":
        """W − ΔW, b − Δb."""
        return LinearParams(self.weight - step["weight"], None if self.bias is None else self.bias - step["bias"])


def predictions(p: LinearParams, x: np.ndarray) -> np.ndarray:
    """Ŷ = X·Wᵀ + b, one row per sample."""
    return x @ p.weight.T + (0.0 if p.bias is None else p.bias)


def mse_count(y: np.ndarray, reduction: str) -> int:
    """c in L = (1/c)·Σ(ŷ − y)²: N·d_out (every element) for 'mean', 1 for 'sum'."""
    return y.size if reduction == "mean" else 1


def mse_value(p: LinearParams, x, y, reduction: str = "mean") -> float:
    """L = (1/c)·Σᵢ Σₒ (ŷᵢₒ − yᵢₒ)², c = N·d_out for nn.MSELoss() and 1 for reduction='sum'."""
    x, y = array(x), array(y)
    return float(np.sum((predictions(p, x) - y) ** 2) / mse_count(y, reduction))


def mse_gradients(p: LinearParams, x, y, reduction: str = "mean") -> dict[str, np.ndarray]:
    """∂L/∂W = (2/c)·Σᵢ (ŷᵢ − yᵢ)·xᵢᵀ and ∂L/∂b = (2/c)·Σᵢ (ŷᵢ − yᵢ), c as in `mse_value`."""
    x, y = array(x), array(y)
    residual = predictions(p, x) - y
    scale = 2.0 / mse_count(y, reduction)
    result = {"weight": scale * residual.T @ x}
    if p.bias is not None:
        result["bias"] = scale * residual.sum(axis=0)
    return result


def residual_magnitudes(p: LinearParams, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """aᵢₒ = (|W||xᵢ|)ₒ + |bₒ| + |yᵢₒ| ≥ |ŷᵢₒ − yᵢₒ|: what the rounding error of a residual scales with."""
    return np.abs(x) @ np.abs(p.weight).T + (0.0 if p.bias is None else np.abs(p.bias)) + np.abs(y)


def mse_value_magnitude(p: LinearParams, x, y, reduction: str = "mean") -> float:
    """(1/c)·Σ aᵢₒ²: what the rounding error of the loss value scales with."""
    x, y = array(x), array(y)
    return float(np.sum(residual_magnitudes(p, x, y) ** 2) / mse_count(y, reduction))


def mse_gradient_magnitudes(p: LinearParams, x, y, reduction: str = "mean") -> dict[str, np.ndarray]:
    """(2/c)·Σᵢ aᵢ·|xᵢ|ᵀ and (2/c)·Σᵢ aᵢ: what the rounding errors of ∂L/∂W and ∂L/∂b scale with."""
    x, y = array(x), array(y)
    a = residual_magnitudes(p, x, y)
    scale = 2.0 / mse_count(y, reduction)
    result = {"weight": scale * a.T @ np.abs(x)}
    if p.bias is not None:
        result["bias"] = scale * a.sum(axis=0)
    return result


def tutorial_gradients(p: LinearParams, x, y) -> dict[str, np.ndarray]:
    """The tutorial's micro-batch formulas ∇W_j = (2/m)·Σᵢ (ŷᵢ − yᵢ)·xᵢᵀ, ∇b_j = (2/m)·Σᵢ (ŷᵢ − yᵢ).

    They are the gradient of (1/m)·Σᵢ ‖ŷᵢ − yᵢ‖², the mean over rows of the squared error summed
    over outputs. nn.MSELoss averages over all m·d_out elements, so its gradient is these divided
    by d_out: the two agree exactly when there is one output, as in the tutorial.
    """
    x, y = array(x), array(y)
    residual = predictions(p, x) - y
    m = x.shape[0]
    result = {"weight": (2.0 / m) * residual.T @ x}
    if p.bias is not None:
        result["bias"] = (2.0 / m) * residual.sum(axis=0)
    return result


def summed(maps: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Σⱼ gⱼ per parameter (the tutorial's ∇W_accumulated = Σⱼ ∇W_j)."""
    return {name: sum(m[name] for m in maps) for name in maps[0]}


def as_tensors(named: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The arrays as float64 tensors, for the comparisons in properties.compare."""
    return {name: torch.from_numpy(np.array(value, dtype=np.float64)) for name, value in named.items()}


Gradient = Callable[[LinearParams, np.ndarray, np.ndarray], dict[str, np.ndarray]]


def linear_sgd_trajectory(
    start: LinearParams, steps: Sequence[Sequence[Batch]], lr: float, gradient: Gradient = mse_gradients
) -> list[LinearParams]:
    """Plain SGD in closed form: for each step, θ ← θ − η·Σⱼ gradient(θ, micro-batch j); every θ after a step."""
    trajectory, p = [], start
    for micro_batches in steps:
        g = summed([gradient(p, x, y) for x, y in micro_batches])
        p = p.minus({name: lr * value for name, value in g.items()})
        trajectory.append(p)
    return trajectory


def sgd_update(spec: OptimizerSpec, theta: torch.Tensor, g: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
    """torch.optim.SGD as documented: g ← g + λθ; b ← g at the first step, else μb + (1−τ)g; g ← g + μb (Nesterov) or b; θ ← θ − γg."""
    o = spec.options
    g = -g if o["maximize"] else g
    if o["weight_decay"]:
        g = g + o["weight_decay"] * theta
    new_state = {}
    if o["momentum"]:
        buf = state.get("momentum_buffer")
        buf = g.clone() if buf is None else o["momentum"] * buf + (1 - o["dampening"]) * g
        new_state["momentum_buffer"] = buf
        g = g + o["momentum"] * buf if o["nesterov"] else buf
    return theta - o["lr"] * g, new_state


def adam_update(spec: OptimizerSpec, theta: torch.Tensor, g: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
    """torch.optim.Adam / AdamW as documented: m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², θ ← θ − γ·m̂/(√v̂ + ε).

    m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ) (v replaced by the running max of v with amsgrad); weight decay
    adds λθ to g for Adam and multiplies θ by (1 − γλ) first for AdamW.
    """
    o = spec.options
    beta1, beta2 = o["betas"]
    g = -g if o["maximize"] else g
    t = float(state.get("step", 0.0)) + 1
    zeros = torch.zeros_like(theta)
    if o["weight_decay"]:
        if spec.name == "AdamW":
            theta = theta * (1 - o["lr"] * o["weight_decay"])
        else:
            g = g + o["weight_decay"] * theta
    m = beta1 * state.get("exp_avg", zeros) + (1 - beta1) * g
    v = beta2 * state.get("exp_avg_sq", zeros) + (1 - beta2) * g * g
    new_state = {"step": torch.tensor(t, dtype=torch.float64), "exp_avg": m, "exp_avg_sq": v}
    if o["amsgrad"]:
        v = torch.maximum(state.get("max_exp_avg_sq", zeros), v)
        new_state["max_exp_avg_sq"] = v
    m_hat = m / (1 - beta1**t)
    v_hat = v / (1 - beta2**t)
    return theta - o["lr"] * m_hat / (v_hat.sqrt() + o["eps"]), new_state


UPDATES = {"SGD": sgd_update, "Adam": adam_update, "AdamW": adam_update}


def optimizer_update(
    spec: OptimizerSpec, params: dict[str, torch.Tensor], grads: G.GradMap, state: StateMap
) -> tuple[dict[str, torch.Tensor], StateMap]:
    """One documented step for every parameter that has a gradient; the others are left as they are."""
    new_params, new_state = {}, {}
    for name, theta in params.items():
        g = grads.get(name)
        if g is None:
            new_params[name], new_state[name] = theta, state.get(name, {})
            continue
        new_params[name], new_state[name] = UPDATES[spec.name](spec, theta, dense(g), state.get(name, {}))
    return new_params, new_state


def parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every parameter."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


@dataclass(frozen=True)
class Snapshot:
    """After one step: the gradient it used, the parameters and the optimizer's state."""

    grads: G.GradMap
    params: dict[str, torch.Tensor]
    state: StateMap


def concatenated(micro_batches: Sequence[Batch]) -> Batch:
    """The full batch: the micro-batches' rows, in order."""
    xs, ys = zip(*micro_batches)
    return torch.cat(xs), torch.cat(ys)


def full_batch_gradients(model: nn.Module, micro_batches: Sequence[Batch]) -> G.GradMap:
    """∂L/∂θ of the mean MSE over all rows of the window at once (autograd.grad, .grad untouched)."""
    x, y = concatenated(micro_batches)
    return G.fresh_gradients(model, G.mse(model, x, y))


def full_batch_run(model: nn.Module, optimizer: torch.optim.Optimizer, windows: Sequence[Sequence[Batch]]) -> list[Snapshot]:
    """For each window: zero_grad, one backward of the mean MSE over all its rows, step; a snapshot after each step."""
    snapshots = []
    for micro_batches in windows:
        optimizer.zero_grad()
        x, y = concatenated(micro_batches)
        G.mse(model, x, y).backward()
        used = G.grads(model)
        optimizer.step()
        snapshots.append(Snapshot(used, parameters(model), named_state(optimizer, model)))
    return snapshots
