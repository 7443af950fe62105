"""The lowest floating-point precision a run's autograd-tracked computation actually ran in, observed op by op."""

from __future__ import annotations

import contextlib

import torch

try:
    from torch.overrides import TorchFunctionMode
except ImportError:  # torch without function modes: nothing is observed, the dtype is taken as given
    TorchFunctionMode = None


def lower(a: torch.dtype | None, b: torch.dtype | None) -> torch.dtype | None:
    """The one of two floating dtypes with the larger unit roundoff (None: not seen)."""
    if a is None or b is None:
        return a or b
    return a if torch.finfo(a).eps >= torch.finfo(b).eps else b


def tracked_floats(value):
    """The floating-point tensors in a result (a tensor, or a tuple/list of them) that autograd tracks."""
    values = value if isinstance(value, (tuple, list)) else (value,)
    return [v for v in values if isinstance(v, torch.Tensor) and v.is_floating_point() and v.requires_grad]


class PrecisionWatch(TorchFunctionMode or object):
    """Records the lowest precision among the autograd-tracked results of every torch function called while active
    (a model whose loss casts to float32 in a float64 run is seen computing in float32); `paused()` hides exact steps."""

    def __init__(self):
        super().__init__()
        self.lowest: torch.dtype | None = None
        self.hidden = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        if not self.hidden:
            for tensor in tracked_floats(result):
                self.lowest = lower(self.lowest, tensor.dtype)
        return result

    @contextlib.contextmanager
    def paused(self):
        """Ops that round nothing (a GradScaler's power-of-two scaling) are not observed."""
        self.hidden += 1
        try:
            yield
        finally:
            self.hidden -= 1

    @contextlib.contextmanager
    def watching(self):
        """Active for the block (a no-op where torch has no function modes)."""
        if TorchFunctionMode is None:
            yield self
            return
        with self:
            yield self
