"""Rank 0's messages to a launched world and the ranks' answers, as pickled values in the launcher's TCPStore.

torchrun's workers reach one TCPStore (MASTER_ADDR:MASTER_PORT: the agent's, or the rendezvous
store on several nodes). The channel opens its own client connection to it, apart from the process
group's, so a rank stuck in a collective never blocks it: rank 0 posts message n (a Job, or Stop)
under `message/n`, each rank answers under `answer/n/r`, and rank 0 publishes the run's exit code
under `verdict`. Keys are prefixed with the run id and restart count, so a restarted or second
run in the same store reads only its own.
"""

from __future__ import annotations

import os
import pickle
import time
from datetime import timedelta

POLL_S = (0.001, 0.05)
"""rank 0 polls for answers from every 1 ms up to every 50 ms, so that signal handlers run while it waits."""


def prefix() -> str:
    """The key prefix of this launch: torchrun's run id and restart count."""
    run = os.environ.get("TORCHELASTIC_RUN_ID", "none")
    return f"properties.distributed/{run}/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/"


def connect(timeout_s: float):
    """A fresh client of the launcher's store (MASTER_ADDR:MASTER_PORT) under this launch's prefix."""
    from torch.distributed import PrefixStore, TCPStore

    store = TCPStore(
        os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False, timeout=timedelta(seconds=timeout_s)
    )
    return PrefixStore(prefix(), store)


class Channel:
    """Post and read pickled messages, answers and the verdict in one store."""

    def __init__(self, store):
        self.store = store

    def post(self, n: int, message) -> None:
        """Rank 0: message n for every other rank."""
        self.store.set(f"message/{n}", pickle.dumps(message))

    def take(self, n: int):
        """Another rank: message n, blocking up to the store's timeout."""
        return pickle.loads(self.store.get(f"message/{n}"))

    def answer(self, n: int, rank: int, payload) -> None:
        """Rank `rank`'s answer to message n."""
        self.store.set(f"answer/{n}/{rank}", pickle.dumps(payload))

    def answered(self, n: int, rank: int) -> bool:
        """Whether rank `rank` has answered message n."""
        return self.store.check([f"answer/{n}/{rank}"])

    def collect(self, n: int, ranks, deadline: float) -> tuple[dict, list[int]]:
        """The answers to message n of `ranks` that arrive before `deadline` (time.monotonic), and the ranks that did not answer."""
        waiting, answers, pause = set(ranks), {}, POLL_S[0]
        while waiting:
            for rank in sorted(waiting):
                if self.answered(n, rank):
                    answers[rank] = pickle.loads(self.store.get(f"answer/{n}/{rank}"))
                    waiting.discard(rank)
            if not waiting or time.monotonic() >= deadline:
                break
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(2 * pause, POLL_S[1])
        return answers, sorted(waiting)

    def set_verdict(self, code: int) -> None:
        """Rank 0: the run's exit code, for every rank."""
        self.store.set("verdict", str(code))

    def verdict(self) -> int | None:
        """The run's exit code once rank 0 has published it, else None."""
        return int(self.store.get("verdict")) if self.store.check(["verdict"]) else None
