"""A world torchrun launched: every rank joins torchrun's group, rank 0 hands out the examples, every rank runs its part.

Rank 0 holds a `LaunchedWorld`, which runs a case as the rank pool does (`run(case, ...)` returns
one record per rank), so the properties' checks take either. Each example is the pool's `Job`,
posted through the launcher's store (properties.distributed.channel); every rank runs
`worker.answer`, the function the pool's ranks run. A rank that raises, dies or hangs makes
`run` raise `WorldBroken` within `timeout + GRACE_S` of the example's start, naming the ranks,
what they raised and the example: the group is then unusable, so the run ends there.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from properties.distributed.channel import Channel, connect

BACKENDS = {"cpu": "gloo", "cuda": "cpu:gloo,cuda:nccl"}
GRACE_S = 5.0
"""Beyond the process-group timeout: rank 0's own collective times out first, so its error is reported with the others."""
EXIT_GRACE_S = 5.0
"""How long a rank still busy after rank 0's verdict may take before it exits with that verdict."""
IDLE_TIMEOUT_S = 600.0
"""How long a rank waits for rank 0's next message before it gives up (rank 0 gone without a verdict)."""


class WorldBroken(BaseException):
    """A rank raised, died or hung: the group cannot run another example (a BaseException, so Hypothesis does not retry)."""


@dataclass(frozen=True)
class Stop:
    """Rank 0's last message: exit with `code`."""

    code: int


def device_unavailable(device: str) -> str | None:
    """Why `device` cannot run here, or None."""
    import torch

    from properties.distributed import unavailable_reason

    if device == "cuda" and not torch.cuda.is_available():
        return "--device cuda: this torch sees no CUDA device (torch.cuda.is_available() is False)"
    return unavailable_reason()


def join(device: str, timeout_s: float) -> dict[int, object]:
    """init_process_group as torchrun set it up (env://): gloo on CPU, NCCL for CUDA tensors on LOCAL_RANK's GPU; the groups by size."""
    import torch
    import torch.distributed as dist

    from properties.distributed.worker import groups_by_size

    timeout = timedelta(seconds=timeout_s)
    options = {}
    if device == "cuda":
        local = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(local)
        options["device_id"] = local
    dist.init_process_group(BACKENDS[device], init_method="env://", timeout=timeout, **options)
    return groups_by_size(dist.get_world_size(), timeout)


class LaunchedWorld:
    """Rank 0's view of the launched ranks: `run(case)` as RankPool.run, each example run by every rank of the case."""

    def __init__(self, groups: dict, channel: Channel, *, timeout: float, mutants: tuple[str, ...] = (), fault=None):
        self.groups = groups
        self.world_size = max(groups)
        self.channel = channel
        self.timeout = timeout
        self.mutants = mutants
        self.fault = fault
        self.sent = 0
        self.current: tuple[str, float] | None = None
        self.broken: str | None = None

    def run(self, case, *, loop: str = "global-mean", mutants=None, fault=None, timeout: float | None = None) -> list:
        """Every rank of `case` runs its part of the window; one record per rank, rank 0 first (see RankPool.run)."""
        from properties.distributed.cases import DistributedCase
        from properties.distributed.worker import Job, answer
        from properties.mutants.distributed import active

        if self.broken is not None:
            raise WorldBroken(self.broken)
        if not 2 <= case.world_size <= self.world_size:
            raise ValueError(f"this world runs world sizes 2…{self.world_size}, not {case.world_size}")
        names = tuple(sorted({*self.mutants, *(active() if mutants is None else mutants)}))
        fault = fault or (self.fault if isinstance(case, DistributedCase) else None)
        self.sent += 1
        job = Job(self.sent, case, loop, names, fault)
        what = f"running {case!r} (loop {loop!r}" + (f", mutants {list(names)}" if names else "") + ")"
        limit = (self.timeout if timeout is None else timeout) + GRACE_S
        started = time.monotonic()
        self.current = (what, started)
        self.channel.post(job.id, job)
        own = answer(job, 0, self.groups)
        answers, missing = self.channel.collect(job.id, range(1, case.world_size), started + limit)
        answers[0] = own
        self.current = None
        errors = {rank: payload for rank, (kind, _, payload) in answers.items() if kind == "error"}
        if missing or errors:
            self.fail(what, limit, missing, errors, sorted(rank for rank in answers if rank not in errors))
        return [answers[rank][2] for rank in range(case.world_size)]

    def fail(self, what: str, limit: float, missing: list[int], errors: dict, answered: list[int]) -> None:
        """Mark the world broken and raise WorldBroken naming the ranks, what each raised, and the example."""
        lines = []
        if missing:
            lines.append(f"no answer from rank(s) {missing} within {limit:g} s while {what}: they hung or died")
        if errors:
            lines.append(f"rank(s) {sorted(errors)} raised while {what}")
        lines.append(f"ranks that answered: {answered or 'none'}")
        lines += [f"rank {rank} raised:\n{text}" for rank, text in sorted(errors.items())]
        lines.append("the process group cannot run another example: the run ends here")
        self.broken = "\n".join(lines)
        raise WorldBroken(self.broken)


def watch_own_progress(world: LaunchedWorld, verdicts: Channel, limit: float) -> None:
    """Rank 0's watchdog: if its own part of an example runs past `limit`, report it, publish failure and exit."""
    while True:
        time.sleep(0.5)
        current = world.current
        if current is not None and time.monotonic() - current[1] > limit:
            print(f"rank 0 made no progress within {limit:g} s while {current[0]}: rank 0 hung", file=sys.stderr, flush=True)
            verdicts.set_verdict(1)
            os._exit(1)


def exit_on_verdict(rank: int, verdicts: Channel, busy: list) -> None:
    """Another rank's watchdog: once rank 0 has published a verdict, give the main thread EXIT_GRACE_S to end, then exit with it."""
    while (code := verdicts.verdict()) is None:
        time.sleep(0.2)
    time.sleep(EXIT_GRACE_S)
    what = f" while running {busy[0]!r}" if busy else ""
    print(f"rank {rank}: rank 0 ended the run with exit code {code}{what}; exiting", file=sys.stderr, flush=True)
    os._exit(code or 1)


def follow(rank: int, groups: dict, timeout_s: float) -> int:
    """A rank other than 0: run every example rank 0 posts until Stop; its exit code."""
    from properties.distributed.worker import answer

    channel = Channel(connect(IDLE_TIMEOUT_S))
    busy: list = []
    threading.Thread(target=exit_on_verdict, args=(rank, Channel(connect(timeout_s)), busy), daemon=True).start()
    n = 0
    while True:
        n += 1
        message = channel.take(n)
        if isinstance(message, Stop):
            return message.code
        busy[:] = [message.case]
        if rank < message.case.world_size:
            payload = answer(message, rank, groups)
        else:
            payload = ("ok", message.id, None)
        channel.answer(n, rank, payload)
        busy.clear()
