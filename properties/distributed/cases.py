"""A DistributedCase: a Case's k·W micro-batches dealt in order to W ranks, one accumulation window, one SGD step."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from properties.case import Case, dtype_name


@dataclass(frozen=True)
class DistributedCase:
    """Rank r gets micro-batches r·k … r·k + k − 1 of `case` (sizes m_r1 … m_rk); the window ends in SGD(lr)."""

    case: Case
    world_size: int
    lr: float = 0.1

    def __post_init__(self):
        if self.world_size < 1 or len(self.case.sizes) % self.world_size:
            raise ValueError(f"{len(self.case.sizes)} micro-batches cannot be dealt evenly to {self.world_size} ranks")

    @property
    def k(self) -> int:
        """Micro-batches per rank: k − 1 backward calls inside no_sync(), then one synchronised backward."""
        return len(self.case.sizes) // self.world_size

    @property
    def rows(self) -> int:
        """N = Σ_r Σ_j m_rj, the global batch."""
        return self.case.rows

    def rank_sizes(self, rank: int) -> tuple[int, ...]:
        """(m_r1, …, m_rk): the sizes of rank r's micro-batches."""
        return self.case.sizes[rank * self.k : (rank + 1) * self.k]

    def rank_batches(self, rank: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Rank r's k micro-batches: its contiguous slice of the global batch, cut in order."""
        return self.case.micro_batches()[rank * self.k : (rank + 1) * self.k]

    def weights(self, rank: int) -> tuple[float, ...]:
        """w_rj = W·m_rj/N: DDP averages over W ranks, so (1/W)·Σ_r Σ_j w_rj·∇L_rj = Σ m_rj/N·∇L_rj = ∇L."""
        return tuple(self.world_size * m / self.rows for m in self.rank_sizes(rank))

    def __repr__(self) -> str:
        model, case = self.case.model, self.case
        ranks = ", ".join(f"rank {r} {list(self.rank_sizes(r))}" for r in range(self.world_size))
        return (
            f"{model!r}, {dtype_name(case.dtype)}, {self.world_size} ranks × {self.k} micro-batches: {ranks}, "
            f"seed {case.seed}, SGD(lr={self.lr})"
        )

    def _repr_pretty_(self, printer, cycle) -> None:
        """Hypothesis prints a falsifying DistributedCase as its one-line description."""
        printer.text(repr(self))
