"""DDP's options as data, and the wrapper that gives a model a parameter unused in some micro-batches and a buffer."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

import torch

# Large enough that the drawn models fit in one DDP bucket; the all-reduce count does not rely on it: it
# expects each bucket the synced backward reports once, together holding every trainable parameter once.
BUCKET_CAP_MB = 1024.0
# A few parameters of the drawn models per bucket once DDP rebuilds its buckets after the first synced backward.
SMALL_BUCKET_CAP_MB = 1e-5


@dataclass(frozen=True)
class DDPOptions:
    """DistributedDataParallel's arguments, a synced warm-up backward, join(), and where `extra` is used.

    `extra_in` lists the global micro-batch indices whose forward adds the parameter `extra`; the
    others leave it unused (empty: no such parameter). `warmup` runs one synced forward and
    backward on the rank's first micro-batch, then zero_grad(), before the window (no step).
    """

    static_graph: bool = False
    gradient_as_bucket_view: bool = False
    bucket_cap_mb: float = BUCKET_CAP_MB
    find_unused_parameters: bool = False
    broadcast_buffers: bool = True
    warmup: bool = False
    join: bool = False
    extra_in: tuple[int, ...] = ()

    @property
    def wrapped(self) -> bool:
        """Whether the model runs inside `WithExtra` (any option beyond DDP's defaults)."""
        return self != DEFAULT

    def kwargs(self) -> dict:
        """The DistributedDataParallel keyword arguments."""
        return dict(
            static_graph=self.static_graph,
            gradient_as_bucket_view=self.gradient_as_bucket_view,
            bucket_cap_mb=self.bucket_cap_mb,
            find_unused_parameters=self.find_unused_parameters,
            broadcast_buffers=self.broadcast_buffers,
        )

    def __repr__(self) -> str:
        changed = [
            f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if getattr(self, f.name) != getattr(DEFAULT, f.name)
        ]
        return f"DDP({', '.join(changed)})"


DEFAULT = DDPOptions()


class WithExtra(torch.nn.Module):
    """ŷ = model(x) + extra where used (extra = 0 of shape d_out, so ŷ is bitwise model(x)), and a buffer counting forwards."""

    def __init__(self, model: torch.nn.Module, out_features: int, dtype: torch.dtype, extra: bool):
        super().__init__()
        self.model = model
        self.extra = torch.nn.Parameter(torch.zeros(out_features, dtype=dtype)) if extra else None
        self.register_buffer("forwards", torch.zeros((), dtype=dtype))

    def forward(self, x: torch.Tensor, use: Optional[torch.Tensor | bool] = None) -> torch.Tensor:
        """`use` True adds extra to every row, a (rows, 1) 0/1 tensor to the rows it marks, None or False to none."""
        self.forwards += 1
        prediction = self.model(x)
        if self.extra is None or use is None or use is False:
            return prediction
        return prediction + (self.extra if use is True else use * self.extra)


def build(case, options: DDPOptions) -> torch.nn.Module:
    """The case's model, inside `WithExtra` when the options ask for more than DDP's defaults."""
    model = case.build_model()
    if not options.wrapped:
        return model
    out_features = case.full_batch()[1].shape[-1]
    return WithExtra(model, out_features, case.dtype, bool(options.extra_in))
