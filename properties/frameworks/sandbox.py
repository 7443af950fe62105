"""One framework run in isolation: a temporary directory, quiet logs, and every process-wide thing it changes put back.

The frameworks change global state as a matter of course: the transformers Trainer seeds Python's,
NumPy's and torch's generators (`set_seed(args.seed)`), Accelerate keeps its `PartialState`,
`AcceleratorState` and `GradientState` as process-wide singletons, Lightning and transformers set
environment variables and configure their loggers. `isolated()` gives each run a fresh Accelerate
state, and afterwards restores what was there before: the singletons, `os.environ`, the random
generators, torch's global state (`properties.hermetic.GlobalState`), logger levels and warning
filters; what the run printed is kept in `Isolation.output`, not shown.

DeepSpeed changes more than any of them: it picks an accelerator once per process, reads and sets
RANK, LOCAL_RANK, WORLD_SIZE and DS_ACCELERATOR, configures its `DeepSpeed` logger, and keeps its
communication backend (`deepspeed.comm`) and torch.distributed's process group for the process's
life. It therefore never runs here: its ranks are processes of their own (deepspeed_ranks.py), and
the checking process does not even import it; each rank restores its own logger and torch state
around every example, and destroys each engine after it.

The transformers Trainer calls `gc.collect()` at every `train()` (Accelerate's `free_memory`): in a
process that has imported transformers a full collection takes a quarter of a second, most of an
example's time. The objects alive before the run are frozen (`gc.freeze()`) while it runs, so a
collection scans only what the run made; they are unfrozen afterwards.
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import os
import random
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import Iterator

from properties.hermetic import GlobalState

FRAMEWORK_LOGGERS = (
    "transformers",
    "accelerate",
    "pytorch_lightning",
    "lightning",
    "lightning.pytorch",
    "lightning_fabric",
    "torch.distributed",
    "DeepSpeed",
)
ACCELERATE_SINGLETONS = (
    ("accelerate.state", "PartialState"),
    ("accelerate.state", "AcceleratorState"),
    ("accelerate.state", "GradientState"),
)


@dataclass
class Isolation:
    """What an isolated run leaves behind: its temporary directory (removed afterwards) and what it printed."""

    directory: str
    output: io.StringIO = field(default_factory=io.StringIO)


def accelerate_singletons() -> list[dict]:
    """The `_shared_state` dicts of Accelerate's state singletons, when Accelerate is already imported (never imports it)."""
    states = []
    for module_name, class_name in ACCELERATE_SINGLETONS:
        module = sys.modules.get(module_name)
        shared = getattr(getattr(module, class_name, None), "_shared_state", None)
        if isinstance(shared, dict):
            states.append(shared)
    return states


def numpy_random():
    """NumPy's legacy global generator module, if NumPy is imported."""
    numpy = sys.modules.get("numpy")
    return getattr(numpy, "random", None)


@contextlib.contextmanager
def fresh_accelerate_state() -> Iterator[None]:
    """Empty Accelerate's singletons for the run and put the previous contents back afterwards.

    Accelerate may be imported during the run (the transformers Trainer builds an Accelerator): the
    singletons are looked up again on the way out, so those created inside are emptied as well.
    """
    saved = [(shared, dict(shared)) for shared in accelerate_singletons()]
    for shared, _ in saved:
        shared.clear()
    try:
        yield
    finally:
        for shared in accelerate_singletons():
            shared.clear()
        for shared, contents in saved:
            shared.update(contents)


@contextlib.contextmanager
def older_objects_frozen() -> Iterator[None]:
    """gc.freeze() for the duration (unless something else already froze objects: then nothing is changed)."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def isolated() -> Iterator[Isolation]:
    """Run a framework in a temporary directory with fresh Accelerate state; restore every global it touches."""
    torch_state = GlobalState.capture()
    environment = dict(os.environ)
    python_random = random.getstate()
    np_random = numpy_random()
    numpy_state = np_random.get_state() if np_random is not None else None
    levels = {name: logging.getLogger(name).level for name in FRAMEWORK_LOGGERS}
    with tempfile.TemporaryDirectory(prefix="grad-acc-framework-") as directory:
        isolation = Isolation(directory)
        try:
            with (
                warnings.catch_warnings(),
                fresh_accelerate_state(),
                older_objects_frozen(),
                contextlib.redirect_stdout(isolation.output),
            ):
                warnings.simplefilter("ignore")
                for name in FRAMEWORK_LOGGERS:
                    logging.getLogger(name).setLevel(logging.ERROR)
                yield isolation
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)
            os.environ.clear()
            os.environ.update(environment)
            random.setstate(python_random)
            np_random = numpy_random()
            if numpy_state is not None and np_random is not None:
                np_random.set_state(numpy_state)
            if torch_state.differences(GlobalState.capture()):
                torch_state.restore()
