"""One intra-op thread while a check runs: its models are tiny, and torch's thread pool on a busy machine costs 25×."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def one_thread():
    """torch.set_num_threads(1) for the block, the caller's count restored after (check_recipe on a tiny GPT-2, 20
    examples: 2 s with one thread, 50 s with two on a 2-core machine another process keeps busy)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
