"""Observe, by running the installed torch, the behaviours that differ between versions; print them as JSON.

`python -m properties.observe [--output FILE]`. Each probe calls torch (it does not read the
version table); where the table documents the behaviour, the documented value is printed beside
the observed one so that a disagreement shows.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import platform
import sys
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from properties import grads as G
from properties import versions
from properties.case import Case, dtype_name
from properties.models import ModelSpec
from properties.strategies import sparse_accumulation_supported, supported_dtypes

PROBE_CASE = Case(ModelSpec("mlp", 2, 2, hidden=3), sizes=(2, 1))


@dataclass(frozen=True)
class Probe:
    """A behaviour, how to observe it, the table entry documenting it (if any) and what a change means."""

    name: str
    observe: Callable[[], object]
    change: Optional[versions.Change] = None
    consequence: str = ""


def accumulated_model() -> nn.Module:
    """The probe case's model after one backward per micro-batch: every parameter holds a .grad."""
    model = PROBE_CASE.build_model()
    for x, y in PROBE_CASE.micro_batches():
        G.mse(model, x, y).backward()
    return model


def reset_leaves_none(owner: str) -> object:
    """`owner`.zero_grad() with no argument: True if every .grad became None, False if zeroed in place."""
    model = accumulated_model()
    before = {name: p.grad for name, p in model.named_parameters()}
    target = model if owner == "module" else torch.optim.SGD(model.parameters(), lr=0.1)
    target.zero_grad()
    after = {name: p.grad for name, p in model.named_parameters()}
    if all(g is None for g in after.values()):
        return True
    if all(after[n] is before[n] and not bool(after[n].ne(0).any()) for n in after):
        return False
    return "neither: some .grad neither None nor zeroed in place"


def signature_default(function: Callable) -> object:
    """The default of `set_to_none` in `function`'s signature."""
    return inspect.signature(function).parameters["set_to_none"].default


def post_accumulate_hook_calls() -> object:
    """Calls of a post-accumulate-grad hook on one parameter over 3 backward calls (None where torch has no such hook)."""
    if not hasattr(torch.Tensor, "register_post_accumulate_grad_hook"):
        return None
    model = accumulated_model()
    weight = model.hidden.weight
    calls = []
    handle = weight.register_post_accumulate_grad_hook(lambda p: calls.append(p.grad is not None))
    try:
        for x, y in PROBE_CASE.micro_batches() + PROBE_CASE.micro_batches()[:1]:
            G.mse(model, x, y).backward()
    finally:
        handle.remove()
    return f"{len(calls)} calls for 3 backward calls" + ("" if all(calls) else ", some before .grad was written")


def cpu_grad_scaler() -> bool:
    """Whether torch.amp.GradScaler('cpu') can be built."""
    try:
        torch.amp.GradScaler("cpu")
    except (AttributeError, TypeError, RuntimeError):
        return False
    return True


def sparse_half_accumulation() -> list[str]:
    """Low-precision dtypes in which two sparse embedding gradients accumulate into one .grad on CPU."""
    return [dtype_name(d) for d in (torch.float32, torch.float16, torch.bfloat16) if sparse_accumulation_supported(d)]


ZERO_GRAD_CONSEQUENCE = (
    "code that reads or updates `p.grad` after a bare `zero_grad()` (e.g. `p.grad.add_(…)`, or an optimizer "
    "holding the .grad tensor) sees None instead of zeros; pass `set_to_none=False` to keep the old behaviour"
)

PROBES = (
    Probe(
        "Module.zero_grad() sets .grad to None",
        lambda: reset_leaves_none("module"),
        versions.ZERO_GRAD_DEFAULT_SET_TO_NONE,
        ZERO_GRAD_CONSEQUENCE,
    ),
    Probe(
        "Optimizer.zero_grad() sets .grad to None",
        lambda: reset_leaves_none("optimizer"),
        versions.ZERO_GRAD_DEFAULT_SET_TO_NONE,
        ZERO_GRAD_CONSEQUENCE,
    ),
    Probe(
        "Module.zero_grad signature: set_to_none default",
        lambda: signature_default(nn.Module.zero_grad),
        versions.ZERO_GRAD_DEFAULT_SET_TO_NONE,
    ),
    Probe(
        "Optimizer.zero_grad signature: set_to_none default",
        lambda: signature_default(torch.optim.Optimizer.zero_grad),
        versions.ZERO_GRAD_DEFAULT_SET_TO_NONE,
    ),
    Probe(
        "Tensor.register_post_accumulate_grad_hook exists",
        lambda: hasattr(torch.Tensor, "register_post_accumulate_grad_hook"),
        versions.POST_ACCUMULATE_GRAD_HOOK,
        "the hook property runs from this version on; before it, it is skipped (no such hook)",
    ),
    Probe("post-accumulate-grad hook calls", post_accumulate_hook_calls),
    Probe(
        "Optimizer.register_step_post_hook exists",
        lambda: hasattr(torch.optim.Optimizer, "register_step_post_hook"),
        versions.OPTIMIZER_STEP_HOOKS,
        "properties that count optimizer steps through step hooks are skipped before this version",
    ),
    Probe(
        "Module.register_forward_hook takes with_kwargs",
        lambda: "with_kwargs" in inspect.signature(nn.Module.register_forward_hook).parameters,
        versions.FORWARD_HOOK_KEYWORDS,
        "the recipe checker counts rows fed to any submodule, by keyword too, from this version on; before it, the "
        "top-level model's positional inputs only",
    ),
    Probe(
        "Module.register_forward_hook takes always_call",
        lambda: "always_call" in inspect.signature(nn.Module.register_forward_hook).parameters,
        versions.FORWARD_HOOK_ALWAYS_CALL,
        "the recipe checker's row count closes a call that raised from this version on",
    ),
    Probe(
        "torch.amp.GradScaler runs on CPU",
        cpu_grad_scaler,
        versions.CPU_GRAD_SCALER,
        "recipes checked with a GradScaler (scaler=True) run from this version on; before it they are skipped",
    ),
    Probe(
        "torch.func exists",
        lambda: importlib.util.find_spec("torch.func") is not None,
        versions.TORCH_FUNC,
        "the torch.func properties (per-sample gradients, func.grad buffers, functional_call) run from this version on",
    ),
    Probe(
        "torch.compile exists",
        lambda: hasattr(torch, "compile"),
        versions.TORCH_COMPILE,
        "the torch.compile properties (compiled model, windows, optimizer step) run from this version on",
    ),
    Probe(
        "AdamW is a subclass of Adam",
        lambda: issubclass(torch.optim.AdamW, torch.optim.Adam),
        consequence="AdamW.step runs Adam's functional update (decoupled_weight_decay=True) where True, its own "
        "torch.optim.adamw.adamw where False: a patch of one does not reach the other",
    ),
    Probe(
        "CPU dtypes that run Linear + tanh + MSE backward",
        lambda: [dtype_name(d) for d in supported_dtypes("cpu")],
        consequence="the suite draws only these dtypes on CPU: a dtype missing here is not tested in that version",
    ),
    Probe(
        "CPU dtypes that accumulate sparse embedding gradients",
        sparse_half_accumulation,
        consequence="sparse embedding cases in the missing dtypes are not drawn in that version",
    ),
)


def environment() -> dict[str, object]:
    """Versions of Python, torch (and its CUDA build), numpy and hypothesis."""
    import hypothesis

    try:
        import numpy

        numpy_version = numpy.__version__
    except ImportError:
        numpy_version = None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "numpy": numpy_version,
        "hypothesis": hypothesis.__version__,
    }


def run_probe(probe: Probe) -> dict[str, object]:
    """One probe's record: observed value (or the error it raised), documented value, since, source."""
    try:
        observed = probe.observe()
    except Exception as error:  # a probe that cannot run is itself an observation
        observed = f"error: {type(error).__name__}: {error}"
    record: dict[str, object] = {"name": probe.name, "observed": observed, "consequence": probe.consequence}
    if probe.change is not None:
        change = probe.change
        record.update(
            documented=change.expected(), since=change.since, before=change.before, after=change.after, source=change.source
        )
    return record


def observe() -> dict[str, object]:
    """Every probe run on the installed torch, with the environment it ran in."""
    return {"environment": environment(), "behaviours": [run_probe(probe) for probe in PROBES]}


def json_command(prog: str, description: str, produce: Callable[[], object], argv: Optional[list[str]]) -> int:
    """`prog [--output PATH]`: write produce() as JSON to PATH, or to standard output."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--output", help="write the JSON here instead of standard output")
    args = parser.parse_args(argv)
    text = json.dumps(produce(), indent=1)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    else:
        sys.stdout.write(text + "\n")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    return json_command("python -m properties.observe", __doc__.splitlines()[0], observe, argv)


if __name__ == "__main__":
    sys.exit(main())
