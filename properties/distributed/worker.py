"""A rank process: join the gloo group once, then run each example it is sent until told to stop."""

from __future__ import annotations

import importlib
import os
import socket
import threading
import traceback
from dataclasses import dataclass
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.nn.parallel
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks  # noqa: F401

from properties.distributed.cases import DistributedCase
from properties.distributed.fsdp import FSDPCase, run_fsdp_window
from properties.distributed.pipeline import PipelineCase, run_pipeline
from properties.distributed.pipeline_dp import ComposedCase, run_composed
from properties.distributed.window import Fault, run_window
from properties.mutants.distributed import apply_named

HOST = "127.0.0.1"
ORPHANED = 70
# Imported lazily by DDP's constructor, the meta device's to_empty (torch ≥ 2.0) and FSDP2: importing them
# here lets the forkserver pay for them once instead of every rank on its first example. Any failure is left to
# the example that needs the module (torch 1.13's torch.distributed.fsdp raises ValueError on Python 3.11).
WARM_IMPORTS = (
    "torch._dynamo",
    "torch.fx.experimental.symbolic_shapes",
    "torch.distributed.fsdp",
    "torch.distributed.tensor",
    "torch.distributed.pipelining",
)
for _name in WARM_IMPORTS:
    try:
        importlib.import_module(_name)
    except Exception:  # noqa: BLE001 - a warm-up only
        pass


@dataclass(frozen=True)
class Job:
    """One example for every rank of a W-rank group: the case, the loop to run, mutants to apply, a fault to inject."""

    id: int
    case: DistributedCase | FSDPCase | PipelineCase | ComposedCase
    loop: str = "global-mean"
    mutants: tuple[str, ...] = ()
    fault: Fault | None = None


def loopback_interface() -> str | None:
    """The loopback interface's name ('lo' on Linux, 'lo0' on macOS), or None."""
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        return None
    return next((name for name in names if name in ("lo", "lo0")), None)


def join(rank: int, world_size: int, port: int, timeout_s: float) -> dict[int, object]:
    """init_process_group(gloo) through the parent's TCPStore; one group per world size 2…W (ranks 0…w−1)."""
    interface = loopback_interface()
    if interface is not None:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", interface)
    timeout = timedelta(seconds=timeout_s)
    store = dist.TCPStore(HOST, port, is_master=False, timeout=timeout)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world_size, timeout=timeout)
    return groups_by_size(world_size, timeout)


def groups_by_size(world_size: int, timeout: timedelta) -> dict[int, object]:
    """The joined world and one subgroup of ranks 0…w−1 for each w in 2…W−1 (every rank must call it)."""
    groups = {world_size: dist.group.WORLD}
    for size in range(2, world_size):
        groups[size] = dist.new_group(list(range(size)), timeout=timeout)
    return groups


def answer(job: Job, rank: int, groups: dict[int, object]) -> tuple:
    """("ok", id, WindowRecord, FSDPRecord or PipelineRecord), or ("error", id, traceback) when the window raised."""
    try:
        with pytest.MonkeyPatch.context() as monkeypatch:
            apply_named(job.mutants, monkeypatch)
            group = groups[job.case.world_size]
            if isinstance(job.case, ComposedCase):
                record = run_composed(job.case, rank, group)
            elif isinstance(job.case, PipelineCase):
                record = run_pipeline(job.case, rank, group)
            elif isinstance(job.case, FSDPCase):
                record = run_fsdp_window(job.case, rank, group)
            else:
                record = run_window(job.case, rank, group, loop=job.loop, fault=job.fault)
        return ("ok", job.id, record)
    except Exception:
        return ("error", job.id, traceback.format_exc())


def exit_when_orphaned(lifeline) -> None:
    """Block until the pool drops its end of `lifeline` (closed, or its process died), then end this rank at once."""
    try:
        lifeline.recv()
    except (EOFError, OSError):
        pass
    os._exit(ORPHANED)


def serve(rank: int, world_size: int, port: int, conn, lifeline, timeout_s: float) -> None:
    """Rank `rank`'s whole life: join, say ready, answer jobs until None arrives or the pool goes away."""
    threading.Thread(target=exit_when_orphaned, args=(lifeline,), name="lifeline", daemon=True).start()
    torch.set_num_threads(1)
    try:
        groups = join(rank, world_size, port, timeout_s)
    except Exception:
        conn.send(("error", None, traceback.format_exc()))
        return
    conn.send(("ready", None, os.getpid()))
    try:
        while True:
            try:
                job = conn.recv()
            except (EOFError, OSError):
                break
            if job is None:
                break
            conn.send(answer(job, rank, groups))
    finally:
        dist.destroy_process_group()
