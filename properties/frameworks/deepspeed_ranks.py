"""DeepSpeed's ranks: W processes that import DeepSpeed on its CPU accelerator once and run the examples sent to them.

DeepSpeed runs inside the rank processes only: the checking process never imports it, so its
accelerator choice, environment variables (DS_ACCELERATOR, RANK, LOCAL_RANK, WORLD_SIZE), loggers
and communication state (`deepspeed.comm`'s backend, torch.distributed's process group) never
reach it. Each rank is a fresh interpreter (spawn) that sets DS_ACCELERATOR=cpu before importing
DeepSpeed, joins one gloo group through a FileStore in a temporary directory (no port is opened),
and serves jobs until the pool closes. A world size has its pool, started on first use and kept
for the session, so an example costs a DeepSpeed engine, not W imports of DeepSpeed.

DeepSpeed's communication backend JIT-builds a shared-memory op (`deepspeed_shm_comm`) the first
time it starts, into torch's extensions directory; ranks that start together would race on that
build, so each rank builds (or loads) it under an exclusive lock on a file beside the build.
Every wait has a deadline and watches the processes: a rank that dies, hangs or raises fails the
example with a message saying which and why, and the pool restarts on the next example.
"""

from __future__ import annotations

import atexit
import itertools
import multiprocessing
import os
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass
from multiprocessing import connection
from typing import Any, Callable

START_TIMEOUT_S = 180.0
RUN_TIMEOUT_S = 120.0


class RankFailure(RuntimeError):
    """A DeepSpeed rank died, hung or raised outside the loop under test (the pool was shut down)."""


@dataclass(frozen=True)
class Job:
    """Run `work(rank, world_size, *arguments)` on every rank; `id` pairs the answers with the job."""

    id: int
    work: Callable
    arguments: tuple


def extensions_lock() -> str:
    """A lock file beside torch's JIT extensions (TORCH_EXTENSIONS_DIR, else torch's default cache directory)."""
    from torch.utils.cpp_extension import get_default_build_root

    root = get_default_build_root()
    os.makedirs(root, exist_ok=True)
    return os.path.join(root, "deepspeed_shm_comm.build.lock")


def build_comm_op() -> None:
    """Build (or load) DeepSpeed's shared-memory comm op under an exclusive file lock: one build, however many ranks start."""
    import fcntl

    with open(extensions_lock(), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            from deepspeed.comm.torch import build_shm_op

            build_shm_op()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def group_state() -> dict:
    """DeepSpeed's process-wide parallel-group registry (deepspeed.utils.groups: the mpu a pipeline engine sets, the
    data-parallel, expert and model-parallel groups it caches), copied."""
    import copy
    import types

    from deepspeed.utils import groups

    return {
        name: copy.copy(value)
        for name, value in vars(groups).items()
        if not name.startswith("__") and not callable(value) and not isinstance(value, types.ModuleType)
    }


def restore_group_state(state: dict) -> None:
    """Put DeepSpeed's group registry back as `group_state()` found it: no engine's groups reach the next job."""
    import copy

    from deepspeed.utils import groups

    for name, value in state.items():
        setattr(groups, name, copy.copy(value))


def serve(rank: int, world_size: int, store_path: str, conn) -> None:
    """A rank: DeepSpeed on its CPU accelerator in a gloo group of `world_size`; run each Job sent, answer, until None."""
    os.environ.update(DS_ACCELERATOR="cpu", RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size))
    os.environ.pop("LOCAL_SIZE", None)  # DeepSpeed's shared-memory allreduce stays off: its segments are named per host
    try:
        import contextlib
        import io
        import logging

        import torch
        import torch.distributed as dist

        torch.set_num_threads(1)
        with contextlib.redirect_stdout(io.StringIO()):
            build_comm_op()
            import deepspeed

            logging.getLogger("DeepSpeed").setLevel(logging.ERROR)
            dist.init_process_group("gloo", store=dist.FileStore(store_path, world_size), rank=rank, world_size=world_size)
            deepspeed.init_distributed("gloo", verbose=False)
        groups = group_state()
        conn.send(("ready", None, None))
    except BaseException:
        conn.send(("error", None, traceback.format_exc()))
        return
    while True:
        job = conn.recv()
        if job is None:
            break
        try:
            from properties.frameworks.sandbox import isolated

            with isolated():  # environment, loggers, random and torch state as they were before the job
                answer = job.work(rank, world_size, *job.arguments)
            conn.send(("ok", job.id, answer))
        except BaseException:
            conn.send(("error", job.id, traceback.format_exc()))
        finally:
            restore_group_state(groups)
    dist.destroy_process_group()


class DeepSpeedRanks:
    """`world_size` rank processes running DeepSpeed in one gloo group, started on first use."""

    def __init__(self, world_size: int):
        self.world_size = world_size
        self._procs: list = []
        self._conns: list = []
        self._directory: str | None = None
        self._ids = itertools.count()
        self.starts = 0

    @property
    def running(self) -> bool:
        return bool(self._procs)

    def start(self) -> "DeepSpeedRanks":
        """Start the ranks and wait until each has joined the group (no-op when running)."""
        if self.running:
            return self
        ctx = multiprocessing.get_context("spawn")
        self._directory = tempfile.mkdtemp(prefix="grad-acc-deepspeed-")
        store_path = os.path.join(self._directory, "store")
        for rank in range(self.world_size):
            parent_end, child_end = ctx.Pipe()
            process = ctx.Process(
                target=serve, args=(rank, self.world_size, store_path, child_end), name=f"deepspeed-rank-{rank}", daemon=True
            )
            process.start()
            child_end.close()
            self._procs.append(process)
            self._conns.append(parent_end)
        self.starts += 1
        atexit.register(self.close)
        self._collect(None, START_TIMEOUT_S, f"starting {self.world_size} DeepSpeed rank(s)")
        return self

    def run(self, work: Callable, *arguments: Any, timeout: float = RUN_TIMEOUT_S) -> list:
        """Every rank's answer to `work(rank, world_size, *arguments)`, rank 0 first."""
        self.start()
        job = Job(next(self._ids), work, arguments)
        for conn in self._conns:
            conn.send(job)
        answers = self._collect(job.id, timeout, f"running {getattr(work, '__name__', work)}")
        return [answers[rank] for rank in range(self.world_size)]

    def _collect(self, job_id, timeout: float, what: str) -> dict:
        waiting = {conn: rank for rank, conn in enumerate(self._conns)}
        sentinels = {process.sentinel: rank for rank, process in enumerate(self._procs)}
        answers, errors = {}, {}
        deadline = time.monotonic() + timeout
        while waiting:
            remaining = deadline - time.monotonic()
            ready = connection.wait([*waiting, *sentinels], timeout=remaining) if remaining > 0 else []
            if not ready:
                self._fail(f"no answer from DeepSpeed rank(s) {sorted(waiting.values())} within {timeout:g} s while {what}")
            for item in ready:
                if item in sentinels:
                    rank = sentinels.pop(item)
                    if rank in waiting.values():
                        self._procs[rank].join(timeout=1)
                        self._fail(f"DeepSpeed rank {rank} died (exit code {self._procs[rank].exitcode}) while {what}")
                    continue
                rank = waiting.pop(item)
                try:
                    kind, answered, payload = item.recv()
                except (EOFError, OSError):
                    self._fail(f"DeepSpeed rank {rank} died while {what}")
                if kind == "error":
                    errors[rank] = payload
                answers[rank] = payload
        if errors:
            rank = min(errors)
            if job_id is None:
                self._fail(f"DeepSpeed rank {rank} failed while {what}:\n{errors[rank]}")
            raise RankFailure(f"DeepSpeed rank {rank} raised while {what}:\n{errors[rank]}")
        return answers

    def _fail(self, message: str):
        self.close()
        raise RankFailure(message)

    def close(self) -> None:
        """Stop the ranks (ask, then terminate, then kill) and remove the rendezvous directory."""
        for conn in self._conns:
            try:
                conn.send(None)
            except (OSError, ValueError):
                pass
        for process in self._procs:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()
        for conn in self._conns:
            conn.close()
        self._procs, self._conns = [], []
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None


POOLS: dict[int, DeepSpeedRanks] = {}


def ranks(world_size: int) -> DeepSpeedRanks:
    """This process's pool of `world_size` DeepSpeed ranks (one per world size, kept for the session)."""
    if world_size not in POOLS:
        POOLS[world_size] = DeepSpeedRanks(world_size)
    return POOLS[world_size]
