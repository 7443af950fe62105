"""Torch's process-wide state, snapshotted so a test that changes it can be caught and undone."""

from __future__ import annotations

import sys
from dataclasses import dataclass, fields

import torch


@dataclass(frozen=True)
class GlobalState:
    """Default dtype, grad mode, CPU RNG state, threads, deterministic algorithms flag, anomaly mode."""

    default_dtype: torch.dtype
    grad_enabled: bool
    rng_state: bytes
    num_threads: int
    deterministic_algorithms: bool
    anomaly_enabled: bool

    @classmethod
    def capture(cls) -> "GlobalState":
        """The state as it is now."""
        return cls(
            default_dtype=torch.get_default_dtype(),
            grad_enabled=torch.is_grad_enabled(),
            rng_state=bytes(torch.get_rng_state().numpy()),
            num_threads=torch.get_num_threads(),
            deterministic_algorithms=torch.are_deterministic_algorithms_enabled(),
            anomaly_enabled=torch.is_anomaly_enabled(),
        )

    def differences(self, other: "GlobalState") -> list[str]:
        """Names of the fields that differ from `other`, with both values (RNG state summarised)."""
        changed = []
        for field in fields(self):
            mine, theirs = getattr(self, field.name), getattr(other, field.name)
            if mine != theirs:
                shown = ("(consumed or reseeded)", "") if field.name == "rng_state" else (f"{mine!r} →", f"{theirs!r}")
                changed.append(f"{field.name} {shown[0]} {shown[1]}".strip())
        return changed

    def restore(self) -> None:
        """Put torch back into this state, setting only what differs."""
        now = GlobalState.capture()
        if now.default_dtype != self.default_dtype:
            torch.set_default_dtype(self.default_dtype)
        if now.grad_enabled != self.grad_enabled:
            torch.set_grad_enabled(self.grad_enabled)
        if now.rng_state != self.rng_state:
            torch.set_rng_state(torch.frombuffer(bytearray(self.rng_state), dtype=torch.uint8))
        if now.num_threads != self.num_threads:
            torch.set_num_threads(self.num_threads)
        if now.deterministic_algorithms != self.deterministic_algorithms:
            set_deterministic_algorithms(self.deterministic_algorithms)
        if now.anomaly_enabled != self.anomaly_enabled:
            torch.autograd.set_detect_anomaly(self.anomaly_enabled)


def set_deterministic_algorithms(mode: bool) -> None:
    """torch.use_deterministic_algorithms(mode), without importing torch._inductor (seconds) when nothing has yet."""
    if "torch._inductor.config" in sys.modules or not hasattr(torch._C, "_set_deterministic_algorithms"):
        torch.use_deterministic_algorithms(mode)
    else:
        torch._C._set_deterministic_algorithms(mode)
