"""Model specifications: small frozen descriptions that build real `nn.Module`s deterministically."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softplus": F.softplus,
    "gelu": F.gelu,
    "relu": F.relu,
    "leaky_relu": F.leaky_relu,
}

SMOOTH_ACTIVATIONS = ("tanh", "sigmoid", "softplus", "gelu")
"""Activations with a continuous derivative (second-order properties need one)."""

KINDS = ("linear", "mlp", "tied", "embedding", "deep", "conv")

LAYOUTS = ("contiguous", "transposed", "view", "channels_last")
"""How parameters are stored: fresh contiguous tensors, weights stored transposed (non-contiguous), every
parameter a view into one flat buffer, or a Conv2d weight (and its input) in channels_last memory format."""


class MLP(nn.Module):
    """y = W₂·σ(W₁x + b₁) + b₂ with a smooth activation σ."""

    def __init__(self, in_features, hidden, out_features, activation, bias, device=None, dtype=None):
        super().__init__()
        self.hidden = nn.Linear(in_features, hidden, bias=bias, device=device, dtype=dtype)
        self.output = nn.Linear(hidden, out_features, bias=bias, device=device, dtype=dtype)
        self.activation = activation

    def forward(self, x):
        return self.output(ACTIVATIONS[self.activation](self.hidden(x)))


class TiedMLP(nn.Module):
    """y = W·σ(Wx + b) + b: one square Linear used twice, so its gradient is the sum of two uses."""

    def __init__(self, features, activation, bias, device=None, dtype=None):
        super().__init__()
        self.shared = nn.Linear(features, features, bias=bias, device=device, dtype=dtype)
        self.activation = activation

    def first_use(self, x):
        return ACTIVATIONS[self.activation](self.shared(x))

    def second_use(self, h):
        return self.shared(h)

    def forward(self, x):
        return self.second_use(self.first_use(x))


class EmbeddingSum(nn.Module):
    """y_n = Σ_l E[idx_{n,l}]: a bag of embeddings; repeated indices add up in the gradient of E."""

    def __init__(self, num_embeddings, dim, sparse, device=None, dtype=None):
        super().__init__()
        self.embedding = nn.Embedding(num_embeddings, dim, sparse=sparse, device=device, dtype=dtype)

    def forward(self, idx):
        return self.embedding(idx).sum(dim=1)


class DeepMLP(nn.Module):
    """y = W_L·σ(…σ(W₂·σ(W₁x + b₁) + b₂)…) + b_L: L Linear layers, 2L parameter tensors."""

    def __init__(self, in_features, hidden, out_features, depth, activation, bias, device=None, dtype=None):
        super().__init__()
        widths = [in_features] + [hidden] * (depth - 1) + [out_features]
        self.layers = nn.ModuleList(
            nn.Linear(a, b, bias=bias, device=device, dtype=dtype) for a, b in zip(widths[:-1], widths[1:])
        )
        self.activation = activation

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x if i == 0 else ACTIVATIONS[self.activation](x))
        return x


class ConvNet(nn.Module):
    """y = W·vec(σ(conv2d(x, K) + c)) + b: one Conv2d (no padding) on a C×H×H image, then a Linear head."""

    def __init__(self, channels, filters, kernel, image, out_features, activation, bias, device=None, dtype=None):
        super().__init__()
        self.conv = nn.Conv2d(channels, filters, kernel, bias=bias, device=device, dtype=dtype)
        side = image - kernel + 1
        self.head = nn.Linear(filters * side * side, out_features, bias=bias, device=device, dtype=dtype)
        self.activation = activation

    def forward(self, x):
        return self.head(ACTIVATIONS[self.activation](self.conv(x)).flatten(1))


@dataclass(frozen=True)
class ModelSpec:
    """What to build: kind, sizes, activation, bias, frozen parameter names, sparse embedding, depth, image, layout.

    A conv model reads in_features channels of an image×image input through `hidden` filters of
    kernel×kernel; a deep model has `depth` Linear layers of width `hidden` between input and output.
    """

    kind: str
    in_features: int
    out_features: int
    hidden: int = 0
    activation: str = "tanh"
    bias: bool = True
    frozen: tuple[str, ...] = ()
    sparse: bool = False
    bag: int = 2
    depth: int = 2
    image: int = 0
    kernel: int = 1
    layout: str = "contiguous"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown model kind {self.kind!r}; expected one of {KINDS}")
        if self.kind == "tied" and self.in_features != self.out_features:
            raise ValueError("a tied model is square: in_features must equal out_features")
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown layout {self.layout!r}; expected one of {LAYOUTS}")
        if self.layout == "channels_last" and self.kind != "conv":
            raise ValueError("only a conv model has a channels_last layout")
        if self.kind == "conv" and not 1 <= self.kernel <= self.image:
            raise ValueError(f"a conv model needs 1 ≤ kernel ≤ image, got kernel {self.kernel}, image {self.image}")

    def __repr__(self) -> str:
        bias = "" if self.bias else ", no bias"
        frozen = f", frozen {list(self.frozen)}" if self.frozen else ""
        if self.kind == "linear":
            text = f"Linear({self.in_features}→{self.out_features}{bias})"
        elif self.kind == "mlp":
            text = f"MLP({self.in_features}→{self.hidden}→{self.out_features}, {self.activation}{bias})"
        elif self.kind == "tied":
            text = f"TiedMLP({self.in_features}, {self.activation}{bias})"
        elif self.kind == "deep":
            text = f"DeepMLP({self.in_features}→{self.hidden}×{self.depth - 1}→{self.out_features}, {self.activation}{bias})"
        elif self.kind == "conv":
            text = (
                f"ConvNet({self.in_features}×{self.image}×{self.image} → Conv2d({self.in_features}→{self.hidden}, "
                f"{self.kernel}×{self.kernel}) → {self.activation} → Linear(→{self.out_features}){bias})"
            )
        else:
            sparse = "sparse" if self.sparse else "dense"
            text = f"EmbeddingSum({self.in_features}×{self.out_features}, bag {self.bag}, {sparse})"
        layout = "" if self.layout == "contiguous" else f", {self.layout}"
        return text[:-1] + frozen + layout + ")" if frozen or layout else text

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input row: (in_features,), (bag,) indices, or (channels, image, image)."""
        if self.kind == "conv":
            return (self.in_features, self.image, self.image)
        return (self.bag,) if self.takes_indices else (self.in_features,)

    @property
    def largest_tensor(self) -> int:
        """Elements in the model's largest parameter tensor."""
        side = self.image - self.kernel + 1
        sizes = {
            "linear": [self.in_features * self.out_features],
            "mlp": [self.in_features * self.hidden, self.hidden * self.out_features],
            "tied": [self.in_features**2],
            "embedding": [self.in_features * self.out_features],
            "deep": [self.in_features * self.hidden, self.hidden**2 * (self.depth > 2), self.hidden * self.out_features],
            "conv": [self.in_features * self.hidden * self.kernel**2, self.hidden * side * side * self.out_features],
        }
        return max(sizes[self.kind])

    @property
    def takes_indices(self) -> bool:
        """Whether inputs are integer indices (embeddings) rather than float features."""
        return self.kind == "embedding"

    def build(self, *, dtype: torch.dtype, device: str, seed: int) -> nn.Module:
        """Build the module with parameters drawn from N(0, 1/fan_in), seeded, without touching torch's global RNG."""
        module = self._skeleton(device="meta", dtype=dtype).to_empty(device=device)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for _, parameter in sorted(module.named_parameters()):
                fan_in = parameter[0].numel() if parameter.dim() > 1 and self.kind != "embedding" else 1
                values = torch.randn(parameter.shape, generator=generator, dtype=torch.float64)
                parameter.copy_(values / fan_in**0.5)
        restore_layout(module, self.layout)
        for name, parameter in module.named_parameters():
            if name in self.frozen:
                parameter.requires_grad_(False)
        return module

    def parameter_names(self) -> list[str]:
        """Names of the parameters the built module will have, in registration order (without building it)."""
        layers = {
            "linear": [""],
            "mlp": ["hidden.", "output."],
            "tied": ["shared."],
            "embedding": ["embedding."],
            "deep": [f"layers.{i}." for i in range(self.depth)],
            "conv": ["conv.", "head."],
        }
        tensors = ["weight", "bias"] if self.bias and self.kind != "embedding" else ["weight"]
        return [layer + tensor for layer in layers[self.kind] for tensor in tensors]

    def arrange_input(self, x: torch.Tensor) -> torch.Tensor:
        """The input in the memory format the layout calls for (channels_last for a channels_last conv)."""
        return x.contiguous(memory_format=torch.channels_last) if self.layout == "channels_last" else x

    def _skeleton(self, *, device, dtype) -> nn.Module:
        if self.kind == "linear":
            return nn.Linear(self.in_features, self.out_features, bias=self.bias, device=device, dtype=dtype)
        if self.kind == "mlp":
            return MLP(self.in_features, self.hidden, self.out_features, self.activation, self.bias, device, dtype)
        if self.kind == "tied":
            return TiedMLP(self.in_features, self.activation, self.bias, device, dtype)
        if self.kind == "deep":
            return DeepMLP(
                self.in_features, self.hidden, self.out_features, self.depth, self.activation, self.bias, device, dtype
            )
        if self.kind == "conv":
            return ConvNet(
                self.in_features,
                self.hidden,
                self.kernel,
                self.image,
                self.out_features,
                self.activation,
                self.bias,
                device,
                dtype,
            )
        return EmbeddingSum(self.in_features, self.out_features, self.sparse, device, dtype)


def restore_layout(module: nn.Module, layout: str) -> None:
    """Re-store every parameter's values (unchanged) in the layout: transposed matrices, views of one buffer, channels_last."""
    parameters = [p for _, p in module.named_parameters()]
    if layout == "transposed":
        for p in parameters:
            if p.dim() == 2:
                p.data = p.data.T.contiguous().T
    elif layout == "channels_last":
        for p in parameters:
            if p.dim() == 4:
                p.data = p.data.contiguous(memory_format=torch.channels_last)
    elif layout == "view":
        flat = torch.empty(sum(p.numel() for p in parameters) + 1, dtype=parameters[0].dtype, device=parameters[0].device)
        offset = 1  # a non-zero storage offset for every parameter
        for p in parameters:
            view = flat[offset : offset + p.numel()].view(p.shape)
            view.copy_(p.data)
            p.data = view
            offset += p.numel()
