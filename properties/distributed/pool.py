"""The rank pool: W processes that join one gloo group once per session and run examples sent to them.

Processes come from a forkserver that has imported torch once, so starting (or restarting) the
pool costs a fork and a gloo rendezvous rather than W imports of torch. The rendezvous is a
TCPStore this process opens on port 0, so the OS picks a free port and any number of pools
(one per pytest-xdist worker) can run side by side. Every wait has a deadline and watches the
processes: a rank that dies, hangs or raises fails the example with a message saying which and
why, the pool is killed (terminate, then kill) and starts afresh on the next example.
"""

from __future__ import annotations

import atexit
import itertools
import multiprocessing
import time
from collections.abc import Sequence
from contextlib import contextmanager
from datetime import timedelta
from multiprocessing import connection

from properties.distributed.cases import DistributedCase
from properties.distributed.fsdp import FSDPCase, FSDPRecord
from properties.distributed.pipeline import PipelineCase, PipelineRecord
from properties.distributed.pipeline_dp import ComposedCase
from properties.distributed.window import Fault, WindowRecord

DEFECT_TIMEOUT_S = 10.0
"""A registered defect whose ranks block fails within this where registered, not the pool's own timeout."""

PRELOAD = ["properties.distributed.worker"]
DEFAULT_TIMEOUT_S = 30.0
START_TIMEOUT_S = 120.0


class RankFailure(AssertionError):
    """A rank died, hung or raised: the example failed (the pool was shut down and restarts on the next run)."""


def context():
    """A forkserver context that preloads torch and the worker (spawn where there is no forkserver)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def last_line(text: str) -> str:
    """The last non-empty line of a traceback: the exception itself."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text


class RankPool:
    """`world_size` rank processes in one gloo group, serving examples of any world size 2…world_size."""

    def __init__(self, world_size: int = 3, *, timeout: float = DEFAULT_TIMEOUT_S, start_timeout: float = START_TIMEOUT_S):
        self.world_size = world_size
        self.timeout = timeout
        self.start_timeout = start_timeout
        self._procs: list = []
        self._conns: list = []
        self._store = None
        self._lifeline = None
        self._ids = itertools.count()
        self.starts = 0

    @property
    def running(self) -> bool:
        """Whether the rank processes are up."""
        return bool(self._procs)

    def pids(self) -> list[int]:
        """Process ids of the ranks, rank 0 first (empty when not running)."""
        return [p.pid for p in self._procs]

    def start(self) -> RankPool:
        """Start the ranks and wait until every one has joined the group (no-op when running)."""
        if self.running:
            return self
        from torch.distributed import TCPStore

        from properties.distributed.worker import HOST, serve

        ctx = context()
        self._store = TCPStore(HOST, 0, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=self.start_timeout))
        atexit.register(self.close)
        lifeline, self._lifeline = ctx.Pipe(duplex=False)
        for rank in range(self.world_size):
            parent_end, child_end = ctx.Pipe()
            process = ctx.Process(
                target=serve,
                args=(rank, self.world_size, self._store.port, child_end, lifeline, self.timeout),
                name=f"gloo-rank-{rank}",
                daemon=True,
            )
            process.start()
            child_end.close()
            self._procs.append(process)
            self._conns.append(parent_end)
        lifeline.close()
        self.starts += 1
        self._collect(range(self.world_size), None, self.start_timeout, f"starting {self.world_size} ranks")
        return self

    @contextmanager
    def answering_within(self, seconds: float | None):
        """Within the block, a job the ranks do not answer in `seconds` fails (None: the pool's own timeout)."""
        timeout = self.timeout
        if seconds is not None:
            self.timeout = seconds
        try:
            yield self
        finally:
            self.timeout = timeout

    def run(
        self,
        case: DistributedCase | FSDPCase | PipelineCase | ComposedCase,
        *,
        loop: str = "global-mean",
        mutants: Sequence[str] | None = None,
        fault: Fault | None = None,
        timeout: float | None = None,
    ) -> list[WindowRecord] | list[FSDPRecord] | list[PipelineRecord]:
        """Run `case` (DDP; FSDP2 for an FSDPCase; pipelining for a PipelineCase, under DDP or FSDP2 for a ComposedCase) on ranks 0…W−1; `mutants` None forwards the distributed mutants active here."""
        from properties.distributed.worker import Job
        from properties.mutants.distributed import active

        if not 2 <= case.world_size <= self.world_size:
            raise ValueError(f"this pool runs world sizes 2…{self.world_size}, not {case.world_size}")
        self.start()
        job = Job(next(self._ids), case, loop, tuple(active() if mutants is None else mutants), fault)
        for rank in range(case.world_size):
            self._conns[rank].send(job)
        what = f"running {case!r} (loop {loop!r}" + (f", mutants {list(job.mutants)}" if job.mutants else "") + ")"
        answers = self._collect(range(case.world_size), job.id, self.timeout if timeout is None else timeout, what)
        return [answers[rank] for rank in range(case.world_size)]

    def _collect(self, ranks, job_id, timeout: float, what: str) -> dict:
        """Each rank's answer to `job_id`; any death, timeout or error fails with RankFailure after a shutdown."""
        waiting = {self._conns[rank]: rank for rank in ranks}
        sentinels = {process.sentinel: rank for rank, process in enumerate(self._procs)}
        answers, errors = {}, {}
        started = time.monotonic()
        deadline = started + timeout
        while waiting:
            remaining = deadline - time.monotonic()
            ready = connection.wait([*waiting, *sentinels], timeout=remaining) if remaining > 0 else []
            if not ready:
                self._fail(
                    f"no answer from rank(s) {sorted(waiting.values())} within {timeout:g} s while {what}: "
                    "a hung collective or a stuck rank",
                    errors,
                    answered=sorted(answers),
                )
            for ready_object in ready:
                rank = waiting.get(ready_object)
                if rank is None:
                    continue
                try:
                    kind, answered_id, payload = ready_object.recv()
                except (EOFError, OSError):
                    self._died(rank, started, what, errors, answers)
                if answered_id != job_id:
                    continue
                del waiting[ready_object]
                (errors if kind == "error" else answers)[rank] = payload
            for ready_object in ready:
                if ready_object in sentinels:
                    self._died(sentinels[ready_object], started, what, errors, answers)
        if errors:
            self._fail(f"rank(s) {sorted(errors)} raised while {what}", errors, answered=sorted(answers), full=True)
        return answers

    def _died(self, rank: int, started: float, what: str, errors: dict, answers: dict) -> None:
        """Fail because rank `rank` ended (its pipe closed or its process exited)."""
        self._procs[rank].join(1.0)
        self._fail(
            f"rank {rank} exited with code {self._procs[rank].exitcode} after {time.monotonic() - started:.2f} s while {what}",
            errors,
            answered=sorted(answers),
        )

    def _fail(self, message: str, errors: dict, *, answered: list, full: bool = False) -> None:
        """Shut the pool down and raise RankFailure with `message`, what answered, and what the ranks raised."""
        self.close(graceful=False)
        lines = [message, f"ranks that answered: {answered or 'none'}"]
        for rank, text in sorted(errors.items()):
            lines.append(f"rank {rank} raised:\n{text}" if full else f"rank {rank} raised {last_line(text)}")
        lines.append("the rank pool was shut down; it restarts for the next example")
        raise RankFailure("\n".join(lines))

    def close(self, graceful: bool = True) -> None:
        """Stop every rank (ask; drop the lifeline; terminate; kill; each with a deadline) and free the store's port."""
        procs, conns, self._procs, self._conns = self._procs, self._conns, [], []
        if graceful:
            for conn in conns:
                try:
                    conn.send(None)
                except OSError:
                    pass
            deadline = time.monotonic() + 2.0
            for process in procs:
                process.join(max(0.0, deadline - time.monotonic()))
        if self._lifeline is not None:
            self._lifeline.close()
            self._lifeline = None
        for process in procs:
            process.join(0.5)
        for process in procs:
            if process.is_alive():
                process.terminate()
        for process in procs:
            process.join(2.0)
            if process.is_alive():
                process.kill()
                process.join()
        for conn in conns:
            conn.close()
        self._store = None
        atexit.unregister(self.close)

    def __enter__(self) -> RankPool:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()
