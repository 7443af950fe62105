"""A DistributedCase: a Case's k·W micro-batches dealt in order to W ranks, one accumulation window, one SGD step."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from properties.case import Case, dtype_name
from properties.distributed.options import DEFAULT, DDPOptions


@dataclass(frozen=True)
class DistributedCase:
    """Rank r < A gets micro-batches r·k … r·k + k − 1 of `case` (sizes m_r1 … m_rk), ranks A … W − 1 none; then SGD(lr).

    A = `active` (default W): ranks without a micro-batch join (options.join) and shadow the others.
    """

    case: Case
    world_size: int
    lr: float = 0.1
    options: DDPOptions = DEFAULT
    active: int = 0

    def __post_init__(self):
        if not 1 <= self.ranks_with_data <= self.world_size or len(self.case.sizes) % self.ranks_with_data:
            raise ValueError(f"{len(self.case.sizes)} micro-batches cannot be dealt evenly to {self.ranks_with_data} ranks")
        if self.ranks_with_data < self.world_size and not self.options.join:
            raise ValueError("ranks without micro-batches need options.join (DDP's join() context)")

    @property
    def ranks_with_data(self) -> int:
        """A: the ranks that hold micro-batches (all W unless `active` says fewer)."""
        return self.active or self.world_size

    @property
    def k(self) -> int:
        """Micro-batches per rank with data: k − 1 backward calls inside no_sync(), then one synchronised backward."""
        return len(self.case.sizes) // self.ranks_with_data

    def rank_k(self, rank: int) -> int:
        """Rank r's number of micro-batches: k, or 0 for a rank that joins at once."""
        return self.k if rank < self.ranks_with_data else 0

    @property
    def rows(self) -> int:
        """N = Σ_r Σ_j m_rj, the global batch."""
        return self.case.rows

    def rank_sizes(self, rank: int) -> tuple[int, ...]:
        """(m_r1, …, m_rk): the sizes of rank r's micro-batches."""
        return self.case.sizes[rank * self.k : rank * self.k + self.rank_k(rank)]

    def rank_uses_extra(self, rank: int) -> tuple[bool, ...]:
        """Per micro-batch of rank r: whether its forward uses the parameter `extra` (options.extra_in)."""
        return tuple(rank * self.k + j in self.options.extra_in for j in range(self.rank_k(rank)))

    def rank_batches(self, rank: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Rank r's k micro-batches: its contiguous slice of the global batch, cut in order."""
        return self.case.micro_batches()[rank * self.k : rank * self.k + self.rank_k(rank)]

    def weights(self, rank: int) -> tuple[float, ...]:
        """w_rj = W·m_rj/N: DDP averages over W ranks (a joined rank adds zeros), so (1/W)·Σ_r Σ_j w_rj·∇L_rj = Σ m_rj/N·∇L_rj = ∇L."""
        return tuple(self.world_size * m / self.rows for m in self.rank_sizes(rank))

    def __repr__(self) -> str:
        model, case = self.case.model, self.case
        ranks = ", ".join(f"rank {r} {list(self.rank_sizes(r))}" for r in range(self.world_size))
        return (
            f"{model!r}, {dtype_name(case.dtype)}, {self.world_size} ranks × {self.k} micro-batches: {ranks}, "
            f"seed {case.seed}, SGD(lr={self.lr})" + (f", {self.options!r}" if self.options.wrapped else "")
        )

    def _repr_pretty_(self, printer, cycle) -> None:
        """Hypothesis prints a falsifying DistributedCase as its one-line description."""
        printer.text(repr(self))
