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
}

KINDS = ("linear", "mlp", "tied", "embedding")


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


@dataclass(frozen=True)
class ModelSpec:
    """What to build: kind, sizes, activation, bias, frozen parameter names, sparse embedding."""

    kind: str
    in_features: int
    out_features: int
    hidden: int = 0
    activation: str = "tanh"
    bias: bool = True
    frozen: tuple[str, ...] = ()
    sparse: bool = False
    bag: int = 2

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown model kind {self.kind!r}; expected one of {KINDS}")
        if self.kind == "tied" and self.in_features != self.out_features:
            raise ValueError("a tied model is square: in_features must equal out_features")

    def __repr__(self) -> str:
        bias = "" if self.bias else ", no bias"
        frozen = f", frozen {list(self.frozen)}" if self.frozen else ""
        if self.kind == "linear":
            text = f"Linear({self.in_features}→{self.out_features}{bias})"
        elif self.kind == "mlp":
            text = f"MLP({self.in_features}→{self.hidden}→{self.out_features}, {self.activation}{bias})"
        elif self.kind == "tied":
            text = f"TiedMLP({self.in_features}, {self.activation}{bias})"
        else:
            sparse = "sparse" if self.sparse else "dense"
            text = f"EmbeddingSum({self.in_features}×{self.out_features}, bag {self.bag}, {sparse})"
        return text[:-1] + frozen + ")" if frozen else text

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
                fan_in = parameter.shape[-1] if parameter.dim() > 1 and self.kind != "embedding" else 1
                values = torch.randn(parameter.shape, generator=generator, dtype=torch.float64)
                parameter.copy_(values / fan_in**0.5)
        for name, parameter in module.named_parameters():
            if name in self.frozen:
                parameter.requires_grad_(False)
        return module

    def parameter_names(self) -> list[str]:
        """Names of the parameters the built module will have, in registration order (without building it)."""
        layers = {"linear": [""], "mlp": ["hidden.", "output."], "tied": ["shared."], "embedding": ["embedding."]}
        tensors = ["weight", "bias"] if self.bias and self.kind != "embedding" else ["weight"]
        return [layer + tensor for layer in layers[self.kind] for tensor in tensors]

    def _skeleton(self, *, device, dtype) -> nn.Module:
        if self.kind == "linear":
            return nn.Linear(self.in_features, self.out_features, bias=self.bias, device=device, dtype=dtype)
        if self.kind == "mlp":
            return MLP(self.in_features, self.hidden, self.out_features, self.activation, self.bias, device, dtype)
        if self.kind == "tied":
            return TiedMLP(self.in_features, self.activation, self.bias, device, dtype)
        return EmbeddingSum(self.in_features, self.out_features, self.sparse, device, dtype)
