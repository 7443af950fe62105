"""What one rank runs: k micro-batches under DDP, k − 1 of them inside no_sync(), then one SGD step."""

from __future__ import annotations

import os
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from properties import grads as G
from properties.distributed import options as O
from properties.distributed.cases import DistributedCase

LOOPS = {
    "global-mean": "loss of micro-batch j weighted by W·m_rj/N, forward and backward inside no_sync()",
    "loss-over-k": "loss of micro-batch j divided by k (the mean of micro-batch means), whatever the sizes",
    "forward-outside-no-sync": "forward outside no_sync(), only backward inside (DDP then still synchronises)",
}
FAULTS = {"exit": "os._exit(3)", "hang": "sleeps for an hour", "raise": "raises RuntimeError"}

NumpyGrads = dict[str, "np.ndarray | None"]
Syncs = tuple[tuple[int, tuple[str, ...]], ...]


@dataclass(frozen=True)
class Fault:
    """Rank `rank` misbehaves (`action` in FAULTS) just before the synchronised backward."""

    rank: int
    action: str

    def __post_init__(self):
        if self.action not in FAULTS:
            raise ValueError(f"unknown fault {self.action!r}; expected one of {sorted(FAULTS)}")


@dataclass(frozen=True)
class WindowRecord:
    """One rank's window: .grad inside no_sync() and after the synced backward, parameters after the step.

    `syncs[i]` lists the all-reduces backward call i ran: (bucket index, parameter names) per bucket.
    """

    rank: int
    inside: NumpyGrads | None
    synced: NumpyGrads
    params: dict[str, np.ndarray]
    syncs: tuple[Syncs, ...]

    def tensors(self, which: str) -> G.GradMap:
        """`inside`, `synced` or `params` as a map of torch tensors (None stays None)."""
        values = getattr(self, which)
        return {name: None if v is None else torch.from_numpy(v) for name, v in values.items()}


def to_numpy(grad_map: G.GradMap) -> NumpyGrads:
    """Plain arrays that cross process boundaries without torch's shared-memory pickling."""
    return {name: None if g is None else g.detach().cpu().numpy().copy() for name, g in grad_map.items()}


def misbehave(fault: Fault | None, rank: int) -> None:
    """Carry out `fault` if it names this rank."""
    if fault is None or fault.rank != rank:
        return
    if fault.action == "exit":
        os._exit(3)
    if fault.action == "raise":
        raise RuntimeError(f"injected fault: rank {rank} raises before the synchronised backward")
    time.sleep(3600)


def run_window(case: DistributedCase, rank: int, group, *, loop: str = "global-mean", fault: Fault | None = None) -> WindowRecord:
    """DDP over `group`: k − 1 weighted backward calls inside no_sync(), one synchronised, then optimizer.step().

    With case.options: DDP's own arguments, a synced warm-up backward (then zero_grad) before the
    window, join() around the window (a rank without micro-batches joins at once and shadows the
    others), and the parameter `extra` used only in the micro-batches options.extra_in names.
    """
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
    from torch.nn.parallel import DistributedDataParallel

    if loop not in LOOPS:
        raise ValueError(f"unknown loop {loop!r}; expected one of {sorted(LOOPS)}")
    options = case.options
    model = O.build(case.case, options)
    names = {p.data_ptr(): name for name, p in model.named_parameters()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch ≥ 2.13 deprecates broadcast_buffers; it still works
        warnings.simplefilter("ignore", UserWarning)  # static_graph with find_unused_parameters: DDP says the flag is redundant
        ddp = DistributedDataParallel(model, process_group=group, **options.kwargs())
    calls: list[tuple[int, tuple[str, ...]]] = []

    def counting_allreduce(state, bucket):
        calls.append((bucket.index(), tuple(sorted(names[p.data_ptr()] for p in bucket.parameters()))))
        return default_hooks.allreduce_hook(group, bucket)

    ddp.register_comm_hook(None, counting_allreduce)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=case.lr)
    batches, uses = case.rank_batches(rank), case.rank_uses_extra(rank)
    k = len(batches)
    weights = case.weights(rank) if loop != "loss-over-k" else (1 / k,) * k
    syncs: list[Syncs] = []

    def forward(index: int) -> torch.Tensor:
        x = batches[index][0]
        return ddp(x, uses[index]) if options.wrapped else ddp(x)

    def backward(index: int, window) -> None:
        y = batches[index][1]
        if loop == "forward-outside-no-sync":
            prediction = forward(index)
            with window():
                (weights[index] * torch.nn.functional.mse_loss(prediction, y)).backward()
        else:
            with window():
                (weights[index] * torch.nn.functional.mse_loss(forward(index), y)).backward()
        syncs.append(tuple(calls))
        calls.clear()

    if options.warmup:
        x, y = batches[0] if k else case.case.micro_batches()[0]
        torch.nn.functional.mse_loss(ddp(x, bool(uses and uses[0])) if options.wrapped else ddp(x), y).backward()
        optimizer.zero_grad(set_to_none=True)  # the same reset on every torch (1.x's default leaves zeros)
        calls.clear()
    inside = None
    with ddp.join() if options.join else nullcontext():
        for index in range(k - 1):
            backward(index, ddp.no_sync)
        inside = to_numpy(G.grads(model)) if k > 1 else None
        misbehave(fault, rank)
        if k:
            backward(k - 1, nullcontext)
    synced = to_numpy(G.grads(model))
    optimizer.step()
    params = {name: p.detach().numpy().copy() for name, p in model.named_parameters()}
    return WindowRecord(rank, inside, synced, params, tuple(syncs))
