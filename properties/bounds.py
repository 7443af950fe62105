"""Sound rounding bounds from an absolute-value replay: |computed − exact| ≤ γ_K·M, elementwise, for any evaluation order.

Higham's γₙ·Σ|terms| bounds a computed sum only when Σ|terms| is taken over the terms actually
added, at every level of the computation. So each gradient is replayed here, in float64, on
*magnitudes*: every value v carries M(v) ≥ |v| and a depth K(v) such that the computed v̂ obeys
|v̂ − v| ≤ γ_{K(v)}·M(v) whatever order torch sums in. The rules (running-error analysis, first
order, Higham 2002 §3.1–3.4):

    a ± b          M = M(a) + M(b)                  K = max + 1
    a · b          M = M(a)·M(b)                    K = Ka + Kb + 1
    Σᵢ aᵢ (n terms) M = Σᵢ M(aᵢ)                     K = max + n
    f(a)           M = |f(a)| + L_f·M(a) + E_f(a)   K = Ka + c_f
    f′(a)          M = |f′(a)| + S_f·M(a) + E′_f    K = Ka + c_f
    1/√a           M = r + r·M(a)/a  (r = 1/√a)      K = Ka + 3

L_f = sup|f′| and S_f = sup|f″| carry an input's error through f; E_f and E′_f envelope the
terms inside f's own formula (1 − tanh², x·φ(x), …), so a derivative that is small only after
cancellation (a saturated tanh, a GELU far left) still gets the error of its terms; c_f = 8 counts
an elementary function's evaluation error as 4 ulps. Inputs enter exactly (M = |x|, K = 0). Each
rounding may also underflow, adding at most u·tiny (tiny = the dtype's smallest normal), so every
M gains `tiny` per rounding. Two computations of the same exact quantity then differ by at most
(γ_{K₁} + γ_{K₂})·M ≤ 2·γ_K·M, which is the tolerance `Bound.tolerance` gives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F

from properties.case import dtype_name
from properties.compare import Tolerance, gamma, summation_tolerance, unit_roundoff

ELEMENTARY_ROUNDINGS = 8
SQRT_2PI = math.sqrt(2 * math.pi)


@dataclass(frozen=True)
class Mag:
    """A value, its magnitude M ≥ |value| and depth K: the computed value is within γ_K·M of it."""

    value: torch.Tensor
    size: torch.Tensor
    depth: int


@dataclass(frozen=True)
class Activation:
    """f and f′ with their constants: L = sup|f′|, S = sup|f″|, E(a) and E′ the envelopes of their formulas' terms."""

    f: Callable[[torch.Tensor], torch.Tensor]
    derivative: Callable[[torch.Tensor], torch.Tensor]
    lipschitz: float
    curvature: float
    envelope: Callable[[torch.Tensor], torch.Tensor | float]
    derivative_envelope: float
    jump: float = 0.0
    """|f′(0⁺) − f′(0⁻)|: a piecewise-linear f′ is exact except where a rounded z may cross 0 and jump."""


def _gelu_derivative(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.erf(z / math.sqrt(2))) + z * torch.exp(-0.5 * z * z) / SQRT_2PI


ACTIVATION_BOUNDS = {
    # tanh′ = 1 − tanh² ∈ [0, 1]; |tanh″| ≤ 4/(3√3) < 0.77
    "tanh": Activation(torch.tanh, lambda z: 1 - torch.tanh(z) ** 2, 1.0, 0.77, lambda z: 0.0, 2.0),
    # σ′ = σ(1 − σ) ≤ 1/4; |σ″| ≤ 0.1
    "sigmoid": Activation(torch.sigmoid, lambda z: torch.sigmoid(z) * (1 - torch.sigmoid(z)), 0.25, 0.1, lambda z: 0.0, 2.0),
    # softplus′ = σ ∈ (0, 1); softplus″ = σ(1 − σ) ≤ 1/4
    "softplus": Activation(F.softplus, torch.sigmoid, 1.0, 0.25, lambda z: 0.0, 2.0),
    # gelu(z) = z·Φ(z): 1 + erf cancels for z ≪ 0, so its error scales with |z|; gelu′ = Φ + z·φ ≤ 1.13,
    # |gelu″| = φ·|2 − z²| ≤ 0.8; the terms of gelu′ (Φ, |z|φ, z³φ/2 from exp's argument) stay below 1.5
    "gelu": Activation(F.gelu, _gelu_derivative, 1.13, 0.8, lambda z: z.abs(), 3.0),
    # relu′ ∈ {0, 1} (0 at z = 0, as torch's threshold_backward), exact away from 0; relu is 1-Lipschitz and exact
    "relu": Activation(F.relu, lambda z: (z > 0).to(z.dtype), 1.0, 0.0, lambda z: 0.0, 0.0, jump=1.0),
    # leaky_relu′ ∈ {0.01, 1}; the negative side rounds one product
    "leaky_relu": Activation(
        F.leaky_relu, lambda z: torch.where(z > 0, 1.0, 0.01).to(z.dtype), 1.0, 0.0, lambda z: 0.0, 0.0, jump=0.99
    ),
}


class Replay:
    """Magnitude arithmetic in float64 for one dtype: each result gains `tiny` per rounding for underflow."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype
        self.tiny = torch.finfo(dtype).tiny

    def exact(self, tensor: torch.Tensor) -> Mag:
        """A stored input or parameter: exact, so M = |x| and K = 0."""
        value = tensor.detach().to(device="cpu", dtype=torch.float64)
        return Mag(value, value.abs(), 0)

    def add(self, a: Mag, b: Mag, sign: float = 1.0) -> Mag:
        """a ± b."""
        return Mag(a.value + sign * b.value, a.size + b.size + self.tiny, max(a.depth, b.depth) + 1)

    def mul(self, a: Mag, b: Mag) -> Mag:
        """a·b, elementwise (broadcast)."""
        return Mag(a.value * b.value, a.size * b.size + self.tiny, a.depth + b.depth + 1)

    def scale(self, a: Mag, c: float) -> Mag:
        """c·a for a stored constant c."""
        return Mag(c * a.value, abs(c) * a.size + self.tiny, a.depth + 1)

    def matmul(self, a: Mag, b: Mag) -> Mag:
        """a @ b: each entry a dot product of a.shape[-1] terms."""
        n = a.value.shape[-1]
        return Mag(a.value @ b.value, a.size @ b.size + n * self.tiny, a.depth + b.depth + n + 1)

    def total(self, a: Mag, dim: int) -> Mag:
        """Σ over `dim`."""
        n = a.value.shape[dim]
        return Mag(a.value.sum(dim), a.size.sum(dim) + n * self.tiny, a.depth + n)

    def linear(self, x: Mag, weight: Mag, bias: Optional[Mag]) -> Mag:
        """x·Wᵀ + b."""
        z = self.matmul(x, transpose(weight))
        return z if bias is None else self.add(z, bias)

    def activation(self, name: str, z: Mag) -> Mag:
        """f(z) for a smooth activation."""
        act = ACTIVATION_BOUNDS[name]
        value = act.f(z.value)
        size = value.abs() + act.lipschitz * z.size + act.envelope(z.value) + self.tiny
        return Mag(value, size, z.depth + ELEMENTARY_ROUNDINGS)

    def activation_derivative(self, name: str, z: Mag) -> Mag:
        """f′(z), as the activation's backward evaluates it.

        Where f′ jumps at 0 (ReLU), a computed ẑ within γ_K(z)·M(z) of 0 may lie on the other side
        of 0 than z, so f′(ẑ) may differ from f′(z) by the whole jump J: those entries get M ≥ J/γ_K
        (K the result's depth, which every later use only raises), so that γ_K·M covers J.
        """
        act = ACTIVATION_BOUNDS[name]
        value = act.derivative(z.value)
        size = value.abs() + act.curvature * z.size + act.derivative_envelope + self.tiny
        depth = z.depth + ELEMENTARY_ROUNDINGS
        if act.jump:
            u = unit_roundoff(self.dtype)
            reach, scale = gamma(z.depth, u), gamma(depth, u)
            if math.isfinite(scale):
                may_cross = z.value.abs() <= reach * z.size
                size = size + torch.where(may_cross, act.jump / scale, 0.0)
        return Mag(value, size, depth)

    def conv2d(self, x: Mag, kernel: Mag, bias: Optional[Mag]) -> Mag:
        """conv2d(x, K) + c (no padding, stride 1): each output a dot product of C·k·k terms."""
        n = kernel.value[0].numel()
        z = Mag(F.conv2d(x.value, kernel.value), F.conv2d(x.size, kernel.size) + n * self.tiny, x.depth + kernel.depth + n + 1)
        return z if bias is None else self.add(z, Mag(bias.value[:, None, None], bias.size[:, None, None], bias.depth))

    def conv2d_weight_gradient(self, delta: Mag, inputs: Mag, shape) -> Mag:
        """Σ over rows and positions of δ·(input patch): N·H′·W′ terms per weight."""
        n = delta.value.shape[0] * delta.value[0, 0].numel()
        grad = torch.nn.grad.conv2d_weight
        return Mag(
            grad(inputs.value, shape, delta.value),
            grad(inputs.size, shape, delta.size) + n * self.tiny,
            delta.depth + inputs.depth + n + 1,
        )

    def rsqrt(self, a: Mag) -> Mag:
        """1/√a for a > 0: a relative error ε in a gives ε/2 in the result (first order)."""
        r = a.value.rsqrt()
        return Mag(r, r + r * a.size / a.value + self.tiny, a.depth + 3)

    def mse_delta(self, prediction: Mag, target: Mag, count: float) -> Mag:
        """∂L/∂ŷ = (2/c)·(ŷ − y): the MSE backward's output for L = (1/c)·Σ(ŷ − y)², one more rounding for a loss scale."""
        delta = self.scale(self.add(prediction, target, -1.0), 2.0 / count)
        return Mag(delta.value, delta.size, delta.depth + 1)

    def weight_gradient(self, delta: Mag, inputs: Mag) -> Mag:
        """Σᵢ δᵢ·xᵢᵀ over the rows."""
        return self.matmul(transpose(delta), inputs)


def transpose(a: Mag) -> Mag:
    """The transposed value and magnitude (no rounding)."""
    return Mag(a.value.T, a.size.T, a.depth)


@dataclass(frozen=True)
class Bound:
    """Per parameter, M (elementwise) and K of its computed gradient: |ĝ − g| ≤ γ_K·M."""

    sizes: dict[str, torch.Tensor]
    depths: dict[str, int]
    dtype: torch.dtype
    source: str = "the gradient replayed on magnitudes"
    precision_note: str = ""

    def tolerance(self, name: str, extra_roundings: int = 0) -> Tolerance:
        """Two computations of the same gradient, each within γ_{K + extra}·M of it, agree within 2·γ_{K + extra}·max M."""
        u = unit_roundoff(self.dtype)
        depth = self.depths[name] + extra_roundings
        magnitude = float(self.sizes[name].max()) if self.sizes[name].numel() else 0.0
        return Tolerance(
            0.0,
            2 * gamma(depth, u) * magnitude,
            f"2·γ_{depth}·M, M = max of {self.source} = {magnitude:.3g}, u={u:.3g} ({dtype_name(self.dtype)}{self.precision_note})",
        )

    def tolerances(self, extra_roundings: int = 0) -> dict[str, Tolerance]:
        """`tolerance` for every parameter."""
        return {name: self.tolerance(name, extra_roundings) for name in self.sizes}


def weighted_sum(parts: Sequence[Bound], weights: Sequence[float]) -> Bound:
    """The bound of Σⱼ wⱼ·gⱼ given each gⱼ's bound: M = Σⱼ |wⱼ|·Mⱼ, K = max Kⱼ + one product and one addition per term."""
    names = parts[0].sizes
    return Bound(
        {name: sum(abs(w) * part.sizes[name] for part, w in zip(parts, weights)) for name in names},
        {name: max(part.depths[name] for part in parts) + 2 * len(parts) for name in names},
        parts[0].dtype,
    )


def _params(model: torch.nn.Module, replay: Replay) -> dict[str, Mag]:
    return {name: replay.exact(p) for name, p in model.named_parameters()}


def _bound(grads: Mapping[str, Mag], model: torch.nn.Module, dtype: torch.dtype) -> Bound:
    """Keep the parameters' gradients (frozen ones too: a tolerance for them is harmless)."""
    names = [name for name, _ in model.named_parameters()]
    return Bound({n: grads[n].size for n in names}, {n: grads[n].depth for n in names}, dtype)


def model_outputs(spec, model: torch.nn.Module, x: torch.Tensor, replay: Replay) -> tuple[Mag, Callable[[Mag], dict[str, Mag]]]:
    """The replayed forward of a ModelSpec's model on x, and the replayed backward from ∂L/∂ŷ to every parameter."""
    if hasattr(spec, "layer"):
        return _normalised(spec, model, x, replay)
    p = _params(model, replay)
    kind = spec.kind
    if kind == "embedding":
        return _embedding(model, x, replay, p)
    inputs = replay.exact(x)
    if kind == "linear":
        y = replay.linear(inputs, p["weight"], p.get("bias"))

        def backward(delta: Mag) -> dict[str, Mag]:
            grads = {"weight": replay.weight_gradient(delta, inputs)}
            if "bias" in p:
                grads["bias"] = replay.total(delta, 0)
            return grads

        return y, backward
    if kind == "deep":
        return _deep(spec, inputs, replay, p)
    if kind == "conv":
        return _conv(spec, inputs, replay, p)
    first, second = ("hidden.", "output.") if kind == "mlp" else ("shared.", "shared.")
    z = replay.linear(inputs, p[first + "weight"], p.get(first + "bias"))
    h = replay.activation(spec.activation, z)
    y = replay.linear(h, p[second + "weight"], p.get(second + "bias"))

    def backward(delta: Mag) -> dict[str, Mag]:
        dz = replay.mul(replay.matmul(delta, p[second + "weight"]), replay.activation_derivative(spec.activation, z))
        outer = {second + "weight": replay.weight_gradient(delta, h)}
        inner = {first + "weight": replay.weight_gradient(dz, inputs)}
        if first + "bias" in p:
            outer[second + "bias"] = replay.total(delta, 0)
            inner[first + "bias"] = replay.total(dz, 0)
        if kind == "mlp":
            return {**outer, **inner}
        return {name: replay.add(outer[name], inner[name]) for name in outer}

    return y, backward


def _normalised(case, model: torch.nn.Module, x: torch.Tensor, replay: Replay):
    """Linear → (BatchNorm eval | LayerNorm | GroupNorm | Dropout eval) → tanh → Linear, as built by a LayerCase.

    The normalisation's backward is bounded in both arrangements torch may use: the centred
    rstd·(δx̂ − mean δx̂ − x̂·mean(δx̂·x̂)) and the CPU kernel's a·δ + b·h + c on the raw input h,
    whose terms are larger when the mean is large next to the spread; the larger M is kept.
    """
    p = _params(model, replay)
    inputs = replay.exact(x)
    z = replay.linear(inputs, p["0.weight"], p["0.bias"])
    kind = case.layer.split("-")[0]
    norm_forward, norm_backward = (
        _identity_layer()
        if kind == "dropout"
        else (_batchnorm_eval(model[1], replay, p) if kind == "batchnorm" else _group_norm(case, replay, p))
    )
    n = norm_forward(z)
    h = replay.activation("tanh", n)
    y = replay.linear(h, p["3.weight"], p["3.bias"])

    def backward(delta: Mag) -> dict[str, Mag]:
        dn = replay.mul(replay.matmul(delta, p["3.weight"]), replay.activation_derivative("tanh", n))
        dz, layer = norm_backward(z, dn)
        grads = {"3.weight": replay.weight_gradient(delta, h), "3.bias": replay.total(delta, 0)}
        grads.update(layer)
        grads.update({"0.weight": replay.weight_gradient(dz, inputs), "0.bias": replay.total(dz, 0)})
        return grads

    return y, backward


def _deep(spec, inputs: Mag, replay: Replay, p: dict[str, Mag]):
    """zₗ = Wₗ·hₗ₋₁ + bₗ, hₗ = σ(zₗ) (h₀ = x, no σ after the last layer); δzₗ₋₁ = (δzₗ·Wₗ)⊙σ′(zₗ₋₁)."""
    names = [f"layers.{i}." for i in range(spec.depth)]
    h, zs = [inputs], []
    for i, name in enumerate(names):
        zs.append(replay.linear(h[-1], p[name + "weight"], p.get(name + "bias")))
        if i < len(names) - 1:
            h.append(replay.activation(spec.activation, zs[-1]))

    def backward(delta: Mag) -> dict[str, Mag]:
        grads: dict[str, Mag] = {}
        dz = delta
        for i in reversed(range(len(names))):
            grads[names[i] + "weight"] = replay.weight_gradient(dz, h[i])
            if names[i] + "bias" in p:
                grads[names[i] + "bias"] = replay.total(dz, 0)
            if i:
                upstream = replay.matmul(dz, p[names[i] + "weight"])
                dz = replay.mul(upstream, replay.activation_derivative(spec.activation, zs[i - 1]))
        return grads

    return zs[-1], backward


def _conv(spec, inputs: Mag, replay: Replay, p: dict[str, Mag]):
    """z = conv2d(x, K) + c, h = σ(z), y = W·vec(h) + b; δz = reshape(δ·W)⊙σ′(z)."""
    z = replay.conv2d(inputs, p["conv.weight"], p.get("conv.bias"))
    h = replay.activation(spec.activation, z)
    flat = _reshaped(h, (h.value.shape[0], -1))
    y = replay.linear(flat, p["head.weight"], p.get("head.bias"))

    def backward(delta: Mag) -> dict[str, Mag]:
        grads = {"head.weight": replay.weight_gradient(delta, flat)}
        if "head.bias" in p:
            grads["head.bias"] = replay.total(delta, 0)
        upstream = _reshaped(replay.matmul(delta, p["head.weight"]), z.value.shape)
        dz = replay.mul(upstream, replay.activation_derivative(spec.activation, z))
        grads["conv.weight"] = replay.conv2d_weight_gradient(dz, inputs, p["conv.weight"].value.shape)
        if "conv.bias" in p:
            positions = dz.value.shape[0] * dz.value[0, 0].numel()
            summed = dz.value.sum((0, 2, 3)), dz.size.sum((0, 2, 3)) + positions * replay.tiny
            grads["conv.bias"] = Mag(summed[0], summed[1], dz.depth + positions)
        return grads

    return y, backward


def _identity_layer():
    return (lambda z: z), (lambda z, dn: (dn, {}))


def _batchnorm_eval(layer, replay: Replay, p: dict[str, Mag]):
    """(z − running mean)·w/√(running var + eps) + b: an affine map with stored constants."""
    mean = replay.exact(layer.running_mean)
    invstd = replay.rsqrt(replay.add(replay.exact(layer.running_var), replay.exact(torch.tensor(layer.eps))))

    def forward(z: Mag) -> Mag:
        return replay.add(replay.mul(replay.mul(replay.add(z, mean, -1.0), invstd), p["1.weight"]), p["1.bias"])

    def backward(z: Mag, dn: Mag):
        normalised = replay.mul(replay.add(z, mean, -1.0), invstd)
        grads = {"1.weight": replay.total(replay.mul(dn, normalised), 0), "1.bias": replay.total(dn, 0)}
        return replay.mul(replay.mul(dn, p["1.weight"]), invstd), grads

    return forward, backward


def _group_norm(case, replay: Replay, p: dict[str, Mag]):
    """Per row and group of c features: x̂ = (z − μ)·rstd, rstd = 1/√(var + eps), out = x̂·w + b."""
    groups = case.groups if case.layer == "groupnorm" else 1
    width = case.hidden // groups
    eps = replay.exact(torch.tensor(1e-5))
    weight = _reshaped(p["1.weight"], (groups, width))
    bias = _reshaped(p["1.bias"], (groups, width))

    def stats(z: Mag):
        grouped = _reshaped(z, (z.value.shape[0], groups, width))
        mean = _unsqueezed(replay.scale(replay.total(grouped, -1), 1 / width))
        centred = replay.add(grouped, mean, -1.0)
        variance = replay.scale(replay.total(replay.mul(centred, centred), -1), 1 / width)
        rstd = _unsqueezed(replay.rsqrt(replay.add(variance, eps)))
        return grouped, mean, rstd, replay.mul(centred, rstd)

    def forward(z: Mag) -> Mag:
        normalised = stats(z)[3]
        return _reshaped(replay.add(replay.mul(normalised, weight), bias), z.value.shape)

    def backward(z: Mag, dn: Mag):
        grouped, mean, rstd, normalised = stats(z)
        upstream = _reshaped(dn, grouped.value.shape)
        grads = {
            "1.weight": _reshaped(replay.total(replay.mul(upstream, normalised), 0), (case.hidden,)),
            "1.bias": _reshaped(replay.total(upstream, 0), (case.hidden,)),
        }
        dx = replay.mul(upstream, weight)
        mean_dx = _unsqueezed(replay.scale(replay.total(dx, -1), 1 / width))
        mean_dx_x = _unsqueezed(replay.scale(replay.total(replay.mul(dx, normalised), -1), 1 / width))
        centred_form = replay.mul(replay.add(replay.add(dx, mean_dx, -1.0), replay.mul(normalised, mean_dx_x), -1.0), rstd)
        ds = _unsqueezed(replay.total(replay.mul(dx, grouped), -1))
        db = _unsqueezed(replay.total(dx, -1))
        cubed = replay.mul(replay.mul(rstd, rstd), rstd)
        b = replay.scale(replay.mul(replay.add(replay.mul(db, mean), ds, -1.0), cubed), 1 / width)
        c = replay.add(replay.scale(replay.mul(b, mean), -1.0), replay.scale(replay.mul(db, rstd), 1 / width), -1.0)
        raw_form = replay.add(replay.add(replay.mul(dx, rstd), replay.mul(b, grouped)), c)
        both = Mag(centred_form.value, torch.maximum(centred_form.size, raw_form.size), max(centred_form.depth, raw_form.depth))
        return _reshaped(both, dn.value.shape), grads

    return forward, backward


def _reshaped(a: Mag, shape) -> Mag:
    return Mag(a.value.reshape(shape), a.size.reshape(shape), a.depth)


def _unsqueezed(a: Mag) -> Mag:
    return Mag(a.value.unsqueeze(-1), a.size.unsqueeze(-1), a.depth)


def _embedding(model, idx: torch.Tensor, replay: Replay, p: dict[str, Mag]):
    """y_n = Σ_l E[idx_{n,l}]; ∂L/∂E[r] = Σ over the lookups of row r of δ_n."""
    table = p["embedding.weight"]
    bag = idx.shape[1]
    looked_up = table.value[idx], table.size[idx]
    y = Mag(looked_up[0].sum(1), looked_up[1].sum(1) + bag * replay.tiny, table.depth + bag)
    lookups = idx.numel()

    def backward(delta: Mag) -> dict[str, Mag]:
        rows = idx.reshape(-1)
        values = delta.value.repeat_interleave(bag, dim=0)
        sizes = delta.size.repeat_interleave(bag, dim=0)
        grad = torch.zeros_like(table.value).index_add_(0, rows, values)
        size = torch.zeros_like(table.size).index_add_(0, rows, sizes) + lookups * replay.tiny
        return {"embedding.weight": Mag(grad, size, delta.depth + lookups)}

    return y, backward


def mse_gradient_bound(
    spec, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, count: float, dtype: torch.dtype
) -> Bound:
    """The bound of ∂/∂θ of (1/count)·Σ‖model(x) − y‖² over the given rows, for a model built from `spec` (a ModelSpec)."""
    replay = Replay(dtype)
    prediction, backward = model_outputs(spec, model, x, replay)
    return _bound(backward(replay.mse_delta(prediction, replay.exact(y), count)), model, dtype)


def window_bound(spec, model: torch.nn.Module, micro_batches: Sequence, dtype: torch.dtype) -> Bound:
    """The bound of the window's mean-MSE gradient (count N·d_out over all its rows), however it is split and summed."""
    x = torch.cat([xb for xb, _ in micro_batches])
    y = torch.cat([yb for _, yb in micro_batches])
    return mse_gradient_bound(spec, model, x, y, count=y.numel(), dtype=dtype)


def cross_entropy_gradient_bound(
    model: torch.nn.Module, features: torch.Tensor, targets: torch.Tensor, *, count: float, terms: int
) -> Bound:
    """The bound of ∂/∂θ of (1/count)·Σₜ CE(W·xₜ + b, targetₜ) for a Linear classifier over the counted tokens.

    softmax p = exp(z − max z)/Σ exp(…): an error δ in the logits moves pᶜ by at most 2·pᶜ·max|δ|,
    and the subtraction of the max and the log-sum-exp add relative errors of a few u·max|z|, so
    M(pᶜ) = pᶜ·(4 + 6·maxₖ M(zₖ)); δₜ = (pₜ − eₜ)/count with M = (M(pₜ) + eₜ)/count, where
    pₜ − eₜ cancels for a confident right answer. `terms` counts every token summed (ignored ones add exact zeros).
    """
    replay = Replay(torch.float64)
    p = _params(model, replay)
    inputs = replay.exact(features)
    z = replay.linear(inputs, p["weight"], p.get("bias"))
    probabilities = torch.softmax(z.value, dim=-1)
    onehot = F.one_hot(targets, z.value.shape[-1]).to(torch.float64)
    spread = 4 + 6 * z.size.max(dim=-1, keepdim=True).values
    depth = z.depth + z.value.shape[-1] + 2 * ELEMENTARY_ROUNDINGS + 6 + terms
    delta = Mag((probabilities - onehot) / count, (probabilities * spread + onehot) / count + replay.tiny, depth)
    grads = {"weight": replay.weight_gradient(delta, inputs)}
    if "bias" in p:
        grads["bias"] = replay.total(delta, 0)
    return _bound(grads, model, torch.float64)


def clipped_bound(bound: Bound, gradient: Mapping[str, Optional[torch.Tensor]], max_norm: Optional[float]) -> Bound:
    """The bound of g·c, c = min(1, max_norm/(‖g‖₂ + 1e-6)) as clip_grad_norm_ computes it over all parameters.

    |ĉ − c| ≤ c·(|‖ĝ‖ − ‖g‖| + γₙ‖g‖)/(‖g‖ + 1e-6) and |‖ĝ‖ − ‖g‖| ≤ ‖ĝ − g‖₂ ≤ γ_K·‖M‖₂ (min is
    1-Lipschitz, so a window near the threshold is covered too): M(g·c) = c·(M + |g|·(1 + (‖M‖₂ + ‖g‖)/(‖g‖ + 1e-6))).
    """
    if max_norm is None:
        return bound
    present = {name: g.detach().double() for name, g in gradient.items() if g is not None}
    if not present:
        return bound
    norm = math.sqrt(sum(float((g * g).sum()) for g in present.values()))
    size_norm = math.sqrt(sum(float((bound.sizes[name] ** 2).sum()) for name in present))
    coefficient = min(1.0, max_norm / (norm + 1e-6))
    spread = 1 + (size_norm + norm) / (norm + 1e-6)
    elements = sum(g.numel() for g in present.values())
    sizes = {
        name: coefficient * (m + (present[name].abs() * spread if name in present else 0.0)) for name, m in bound.sizes.items()
    }
    return Bound(
        sizes, {name: d + elements + 2 * ELEMENTARY_ROUNDINGS for name, d in bound.depths.items()}, bound.dtype, bound.source
    )


def accumulation_roundings(k: int) -> int:
    """Roundings an accumulated window adds to one full-batch gradient: k − 1 additions into .grad, a loss scale and a division."""
    return k + 4


def sum_tolerances(dtype: torch.dtype, parts: Sequence[Mapping[str, Optional[torch.Tensor]]]) -> dict[str, Tolerance]:
    """Per parameter, Higham's bound for Σⱼ gⱼ over the terms actually added (for sums of the same computed gⱼ).

    A dense gⱼ is one term per entry; a sparse one is its uncoalesced entries (one per lookup),
    which .grad concatenates and densifying sums in an order of its own: n counts them all and
    Σ|terms| takes each entry's absolute value before any of them is summed.
    """
    magnitudes, terms = sparse_term_magnitudes(parts)
    return {name: summation_tolerance(dtype, terms, m) for name, m in magnitudes.items()}


def sparse_term_magnitudes(parts: Sequence[Mapping[str, Optional[torch.Tensor]]]) -> tuple[dict[str, float], int]:
    """max over entries of Σ|terms| (a sparse gradient's uncoalesced entries counted one by one) and the most terms in one sum."""
    totals: dict[str, torch.Tensor] = {}
    terms = 0
    for part in parts:
        count = 0
        for name, g in part.items():
            if g is None:
                continue
            if g.is_sparse:
                absolute = torch.zeros(g.shape, dtype=g.dtype).index_put_(tuple(g._indices()), g._values().abs(), accumulate=True)
                count = max(count, g._nnz())
            else:
                absolute = g.abs()
                count = max(count, 1)
            totals[name] = absolute if name not in totals else totals[name] + absolute
        terms += count
    return {name: float(t.max()) if t.numel() else 0.0 for name, t in totals.items()}, max(terms, 1)


def sample_terms_bound(terms: Sequence[Mapping[str, Optional[torch.Tensor]]], depth: int, dtype: torch.dtype) -> Bound:
    """The bound of g = Σₛ tₛ over per-sample terms tₛ of a model with no replay: M = Σₛ |tₛ|, K = depth + #terms.

    tₛ is sample s's share of the window's mean loss, (cₛ/n)·∇ℓ̄ₛ (cₛ the items it counts, n the
    window's), computed in float64 by the caller. Two evaluations of g — the recipe's micro-batches
    accumulated into .grad, the reference's one backward on the window — both sum the same per-sample
    terms in some order and grouping, with some scalings: Higham's |fl(Σ) − Σ| ≤ γₙ·Σ|terms| bounds
    that part for any order, from the terms actually summed (as `sum_tolerances` does). Each term's
    own evaluation, a backward of at most `depth` roundings along any path, is within γ_depth·Mₛ of
    it, Mₛ its replay on magnitudes; with no replay of a user's model, Mₛ is taken as the largest
    entry of Σₛ|tₛ| over the whole model, every parameter's M the largest of any: a parameter whose
    gradient cancels inside its own backward (attention over a single key, layer 0 of a 2-token Llama:
    the exact q_proj gradient ~1e-20, its terms' magnitudes ~1e-3) keeps only rounding noise in its
    own Σₛ|tₛ|, and the backward's intermediate magnitudes are what its rounding scales with. That is
    the one assumption: no intermediate of the backward exceeds the largest parameter gradient's
    terms by more than the γ_depth margin leaves — depth counts every parameter entry, a row's
    elements and 8 roundings per autograd node. It is an estimate, not a derivation: a model with no
    replay has no derived bound. K = depth + #terms; the caller adds the accumulation's own
    roundings (`accumulation_roundings`).
    """
    names = {name for term in terms for name, g in term.items() if g is not None}
    sizes: dict[str, torch.Tensor] = {}
    for term in terms:
        for name in names:
            g = term.get(name)
            if g is not None:
                magnitude = g.detach().double().abs()
                sizes[name] = magnitude if name not in sizes else sizes[name] + magnitude
    tiny = torch.finfo(dtype).tiny
    largest = max((float(size.max()) for size in sizes.values() if size.numel()), default=0.0)
    return Bound(
        {name: size.clamp(min=largest) + len(terms) * tiny for name, size in sizes.items()},
        {name: depth + len(terms) for name in sizes},
        dtype,
        f"Σ|per-row terms| over {len(terms)} rows, the model's largest (no replay of this model: see bounds.sample_terms_bound)",
    )
