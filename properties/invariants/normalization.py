"""Which layers keep accumulation = full batch: per-row layers do (BatchNorm in eval mode, LayerNorm, GroupNorm,
dropout in eval mode); layers that couple rows or draw per call do not (BatchNorm in train mode, dropout with p > 0)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from hypothesis import strategies as st
from torch import nn

from properties import accumulate as A
from properties import grads as G
from properties import reference as R
from properties.compare import assert_grads_close
from properties.invariants.equivalence import row_tolerances
from properties.strategies import batch_splits, seeds

KEEPS = ("batchnorm-eval", "layernorm", "groupnorm", "dropout-eval")
DROPOUT = 0.5


class ForkedDropout(nn.Module):
    """F.dropout(p) whose mask is drawn under torch.random.fork_rng from seed + call count: the global RNG is left as it was."""

    def __init__(self, p: float, seed: int):
        super().__init__()
        self.p, self.seed, self.calls = p, seed, 0

    def forward(self, x):
        self.calls += 1
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(self.seed + self.calls)
            return nn.functional.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


@dataclass(frozen=True)
class LayerCase:
    """Linear(in → hidden) → layer → tanh → Linear(hidden → out) in float64, its rows cut into micro-batches."""

    layer: str
    in_features: int
    hidden: int
    out_features: int
    sizes: tuple[int, ...]
    seed: int = 0
    groups: int = 1

    @property
    def rows(self) -> int:
        return sum(self.sizes)

    def layer_repr(self) -> str:
        """'BatchNorm1d(4), train mode' and so on."""
        kind, _, mode = self.layer.partition("-")
        names = {
            "batchnorm": f"BatchNorm1d({self.hidden})",
            "layernorm": f"LayerNorm({self.hidden})",
            "groupnorm": f"GroupNorm({self.groups} groups, {self.hidden})",
            "dropout": f"Dropout(p={DROPOUT})",
        }
        return names[kind] + (f", {mode} mode" if mode else "")

    def __repr__(self) -> str:
        return (
            f"Linear({self.in_features}→{self.hidden}) → {self.layer_repr()} → tanh → Linear({self.hidden}→{self.out_features}), "
            f"float64, micro-batches {list(self.sizes)}, seed {self.seed}"
        )

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(repr(self))

    def _layer(self) -> nn.Module:
        kind = self.layer.split("-")[0]
        meta = dict(device="meta", dtype=torch.float64)
        if kind == "batchnorm":
            return nn.BatchNorm1d(self.hidden, **meta)
        if kind == "layernorm":
            return nn.LayerNorm(self.hidden, **meta)
        if kind == "groupnorm":
            return nn.GroupNorm(self.groups, self.hidden, **meta)
        return ForkedDropout(DROPOUT, self.seed)

    def build_model(self) -> nn.Module:
        """Built on the meta device, materialised with to_empty, then every parameter and buffer drawn from a seeded generator."""
        meta = dict(device="meta", dtype=torch.float64)
        model = nn.Sequential(
            nn.Linear(self.in_features, self.hidden, **meta),
            self._layer(),
            nn.Tanh(),
            nn.Linear(self.hidden, self.out_features, **meta),
        ).to_empty(device="cpu")
        generator = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            for name, tensor in sorted(list(model.named_parameters()) + list(model.named_buffers())):
                noise = (
                    torch.randn(tensor.shape, generator=generator, dtype=torch.float64) if tensor.is_floating_point() else None
                )
                if name.endswith("num_batches_tracked"):
                    tensor.zero_()
                elif name.endswith("running_var"):
                    tensor.copy_(1 + 0.5 * noise.abs())
                elif name.startswith("1.") and name.endswith("weight"):
                    tensor.copy_(1 + 0.1 * noise)
                elif name.endswith("bias") or name.endswith("running_mean"):
                    tensor.copy_(0.5 * noise)
                else:
                    tensor.copy_(noise / tensor.shape[-1] ** 0.5)
        mode = self.layer.partition("-")[2]
        return model.train(mode != "eval")

    def full_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) for all N rows, standard normal, from a generator seeded by seed + 1."""
        generator = torch.Generator().manual_seed(self.seed + 1)
        x = torch.randn(self.rows, self.in_features, generator=generator, dtype=torch.float64)
        return x, torch.randn(self.rows, self.out_features, generator=generator, dtype=torch.float64)

    def micro_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The full batch cut, in order, into micro-batches of the case's sizes."""
        x, y = self.full_batch()
        return list(zip(torch.split(x, list(self.sizes)), torch.split(y, list(self.sizes))))


@st.composite
def layer_cases(draw, layers: Sequence[str] = KEEPS, min_k: int = 1) -> LayerCase:
    """A layer from `layers`, 1–3 micro-batches (each of ≥ 2 rows for BatchNorm in train mode).

    Normalised groups have ≥ 3 features and the first layer ≥ 2 inputs: LayerNorm over two
    features maps h to ±1 up to eps, and over h = w·x with one input to ±LN(w), so the gradient
    of the first Linear is then a cancellation far below its own rounding error.
    """
    layer = draw(st.sampled_from(tuple(layers)))
    hidden = draw(st.sampled_from([3, 4, 6]))
    groups = draw(st.sampled_from([g for g in (1, 2) if hidden % g == 0 and hidden // g >= 3])) if layer == "groupnorm" else 1
    smallest = 2 if layer == "batchnorm-train" else 1
    sizes = draw(batch_splits(min_k=min_k, max_k=3, max_size=3))
    return LayerCase(
        layer=layer,
        in_features=draw(st.integers(2, 3)),
        hidden=hidden,
        out_features=draw(st.integers(1, 2)),
        sizes=tuple(m + smallest - 1 for m in sizes),
        seed=draw(seeds()),
        groups=groups,
    )


KEEPING_CASES = {layer: layer_cases([layer], min_k=2) for layer in KEEPS}
BATCHNORM_TRAIN_CASES = layer_cases(["batchnorm-train"])
DROPOUT_TRAIN_CASES = layer_cases(["dropout-train"])
LAYERNORM_CASES = layer_cases(["layernorm"], min_k=2)


def check_layer_keeps_accumulation_equal_to_full_batch(case: LayerCase) -> None:
    """With this layer, Σⱼ (mⱼ/N)·∇L̄ⱼ (one backward per micro-batch) equals ∇L̄ over all N rows."""
    __tracebackhide__ = True
    model, full = case.build_model(), case.build_model()
    batches = case.micro_batches()
    expected = R.full_batch_gradients(full, batches)
    A.accumulate(model, batches)
    per_row = case.build_model().eval()
    tolerance = row_tolerances(per_row, case, torch.float64, batches)
    assert_grads_close(
        G.grads(model),
        expected,
        tolerance=tolerance,
        context=f"{case}; accumulated Σⱼ (mⱼ/N)·mean lossⱼ vs one backward over all {case.rows} rows",
    )
