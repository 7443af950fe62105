"""DDP and FSDP2 accumulation on real gloo process groups: rank processes started once, fed examples, checked against one process."""

from __future__ import annotations


def unavailable_reason() -> str | None:
    """Why torch.distributed with gloo cannot run here, or None when it can."""
    import torch.distributed as dist

    if not dist.is_available():
        return "this torch is built without torch.distributed"
    if not dist.is_gloo_available():
        return "this torch's torch.distributed has no gloo backend"
    return None
