"""Broken DDP: no_sync() that does nothing or never re-enables sync, an all-reduce that sums, a bucket never all-reduced.

Rank processes are separate interpreters, so a patch in the test process does not reach them
by itself: each patch is marked with its mutant's name, `active()` reads the marks in this
process, and the rank pool forwards those names so every rank applies the same mutants for the
example (and undoes them after it). Applying a mutant here therefore breaks DDP in the ranks too.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import pytest

from properties.mutants import Mutant

MARK = "distributed_mutant"


def _targets() -> dict:
    """Where each mutant patches: DistributedDataParallel.no_sync and the allreduce communication hook."""
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
    from torch.nn.parallel import DistributedDataParallel

    return {
        "no_sync": (DistributedDataParallel, "no_sync"),
        "allreduce_hook": (default_hooks, "allreduce_hook"),
        "register_comm_hook": (DistributedDataParallel, "register_comm_hook"),
    }


def _install(monkeypatch: pytest.MonkeyPatch, target: str, name: str, replacement) -> None:
    owner, attribute = _targets()[target]
    setattr(replacement, MARK, name)
    monkeypatch.setattr(owner, attribute, replacement)


def _null_no_sync(self):
    return nullcontext()


@contextmanager
def _no_sync_never_restores(self):
    self.require_backward_grad_sync = False
    yield


def _summing_allreduce_hook(process_group, bucket):
    import torch.distributed as dist

    group = process_group if process_group is not None else dist.group.WORLD
    work = dist.all_reduce(bucket.buffer(), group=group, async_op=True)
    return work.get_future().then(lambda future: future.value()[0])


def _skipping_first_bucket(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """register_comm_hook that registers a hook leaving bucket 0 as the rank's own sum: never all-reduced."""
    import torch
    from torch.nn.parallel import DistributedDataParallel

    original = DistributedDataParallel.register_comm_hook

    def register_comm_hook(self, state, hook):
        def skipping(state, bucket):
            if bucket.index() == 0:
                future = torch.futures.Future()
                future.set_result(bucket.buffer())
                return future
            return hook(state, bucket)

        return original(self, state, skipping)

    _install(monkeypatch, "register_comm_hook", name, register_comm_hook)


NO_SYNC_DOES_NOTHING = Mutant(
    "ddp-no-sync-does-nothing",
    "DistributedDataParallel.no_sync() is a null context: every backward all-reduces",
    lambda mp: _install(mp, "no_sync", "ddp-no-sync-does-nothing", _null_no_sync),
)
NO_SYNC_NEVER_RESTORES = Mutant(
    "ddp-no-sync-never-restores",
    "leaving DistributedDataParallel.no_sync() does not re-enable gradient sync",
    lambda mp: _install(mp, "no_sync", "ddp-no-sync-never-restores", _no_sync_never_restores),
)
ALLREDUCE_SUMS = Mutant(
    "ddp-allreduce-sums",
    "DDP's allreduce communication hook sums gradients over ranks instead of averaging",
    lambda mp: _install(mp, "allreduce_hook", "ddp-allreduce-sums", _summing_allreduce_hook),
)

SKIPS_A_BUCKET = Mutant(
    "ddp-skips-a-bucket",
    "DDP never all-reduces its bucket 0: those parameters keep each rank's own accumulated gradient",
    lambda mp: _skipping_first_bucket(mp, "ddp-skips-a-bucket"),
)

MUTANTS = (NO_SYNC_DOES_NOTHING, NO_SYNC_NEVER_RESTORES, ALLREDUCE_SUMS, SKIPS_A_BUCKET)
BY_NAME = {mutant.name: mutant for mutant in MUTANTS}


def active() -> tuple[str, ...]:
    """Names of the mutants of this module installed in this process right now (empty without torch.distributed)."""
    try:
        targets = _targets()
    except (ImportError, RuntimeError):
        return ()
    marks = {getattr(getattr(owner, attribute), MARK, None) for owner, attribute in targets.values()}
    return tuple(sorted(name for name in marks if name is not None))


def apply_named(names, monkeypatch: pytest.MonkeyPatch) -> None:
    """Install the mutants called `names` (as forwarded by the rank pool) through `monkeypatch`."""
    unknown = sorted(set(names) - set(BY_NAME))
    if unknown:
        raise ValueError(f"unknown distributed mutants {unknown}; known: {sorted(BY_NAME)}")
    for name in names:
        BY_NAME[name].apply(monkeypatch)
