"""Devices to run on: CPU always, CUDA where this machine has it (skipped with a reason otherwise)."""

from __future__ import annotations

import pytest
import torch


def cuda_available() -> bool:
    """Whether torch sees a CUDA device."""
    return torch.cuda.is_available()


def device_params() -> list:
    """pytest parameters 'cpu' and 'cuda', the latter skipped when CUDA is unavailable."""
    return [
        pytest.param("cpu", id="cpu"),
        pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(not cuda_available(), reason="CUDA is not available")),
    ]
