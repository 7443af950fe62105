"""A Case: one frozen, printable example; building its model and data is cheap and deterministic."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from properties.models import ModelSpec

DTYPE_NAMES = {
    torch.float64: "float64",
    torch.float32: "float32",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
}


def dtype_name(dtype: torch.dtype) -> str:
    """'float64' for torch.float64, and so on."""
    return DTYPE_NAMES.get(dtype, str(dtype).replace("torch.", ""))


@dataclass(frozen=True)
class Case:
    """A model, a batch of sum(sizes) rows cut into micro-batches of the given sizes, a dtype, a seed."""

    model: ModelSpec
    sizes: tuple[int, ...]
    dtype: torch.dtype = torch.float64
    seed: int = 0
    device: str = "cpu"

    def __repr__(self) -> str:
        where = "" if self.device == "cpu" else f" on {self.device}"
        return f"{self.model!r}, {dtype_name(self.dtype)}, micro-batches {list(self.sizes)}, seed {self.seed}{where}"

    def _repr_pretty_(self, printer, cycle) -> None:
        """Hypothesis prints a falsifying Case as its one-line description."""
        printer.text(repr(self))

    @property
    def rows(self) -> int:
        """N = m₁ + … + m_k, the full batch's number of rows."""
        return sum(self.sizes)

    def build_model(self) -> torch.nn.Module:
        """The case's model, seeded by the case's seed."""
        return self.model.build(dtype=self.dtype, device=self.device, seed=self.seed)

    def full_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) for all N rows: standard normal features or uniform indices, standard normal targets."""
        generator = torch.Generator().manual_seed(self.seed + 1)
        spec = self.model
        if spec.takes_indices:
            x = torch.randint(0, spec.in_features, (self.rows, spec.bag), generator=generator)
        else:
            x = torch.randn(self.rows, *spec.input_shape, generator=generator, dtype=torch.float64).to(self.dtype)
        y = torch.randn(self.rows, spec.out_features, generator=generator, dtype=torch.float64).to(self.dtype)
        return spec.arrange_input(x.to(self.device)), y.to(self.device)

    def micro_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The full batch cut, in order, into micro-batches of sizes m₁, …, m_k."""
        x, y = self.full_batch()
        return list(zip(torch.split(x, list(self.sizes)), torch.split(y, list(self.sizes))))
