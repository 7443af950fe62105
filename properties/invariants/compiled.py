"""torch.compile: a compiled model accumulates like the eager one, window after window; a compiled optimizer step equals the eager one.

Compiling costs seconds, so the models come from a few fixed architectures (dynamo compiles
each once and reuses it for every instance and batch size) and the slow properties draw a share
of the profile's examples. `aot_eager` (AOTAutograd's graphs run eagerly, no C++ compiler) is
drawn in every profile; the thorough profile also draws `inductor`.
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st
from torch import nn

from properties import accumulate as A
from properties import bounds, profiles
from properties import grads as G
from properties.case import Case
from properties.compare import assert_grads_close
from properties.invariants import equivalence, optimizer_steps
from properties.models import ModelSpec
from properties.optimizers import OptimizerSpec
from properties.strategies import batch_splits, cases, step_counts

ARCHITECTURES = (
    ModelSpec("linear", 3, 2),
    ModelSpec("mlp", 3, 2, hidden=4, activation="tanh"),
    ModelSpec("mlp", 2, 1, hidden=3, activation="gelu"),
)
BACKENDS = st.sampled_from(("aot_eager", "inductor") if profiles.thorough() else ("aot_eager",))
CASES = cases(models=st.sampled_from(ARCHITECTURES), sizes=batch_splits(max_k=3))
STEPS = step_counts(min_value=2, max_value=3)
SGD = st.sampled_from([OptimizerSpec.of("SGD", lr=0.1), OptimizerSpec.of("SGD", lr=0.1, momentum=0.9)])
ADAM = st.sampled_from([OptimizerSpec.of("Adam", lr=0.01), OptimizerSpec.of("AdamW", lr=0.01)])


def compiled(model: nn.Module, backend: str) -> nn.Module:
    """The model with its forward compiled (backend=…, dynamic=True: one graph for every batch size); its names unchanged."""
    model.forward = torch.compile(model.forward, backend=backend, dynamic=True)
    return model


def check_compiled_model_accumulates_like_eager(case: Case, backend: str) -> None:
    """k backward calls through torch.compile(model) leave the eager model's accumulated .grad (= the full-batch gradient)."""
    __tracebackhide__ = True
    model, eager = case.build_model(), case.build_model()
    batches = case.micro_batches()
    A.accumulate(compiled(model, backend), batches)
    A.accumulate(eager, batches)
    bound = bounds.window_bound(case.model, eager, batches, case.dtype)
    assert_grads_close(
        G.grads(model),
        G.grads(eager),
        tolerance=bound.tolerances(bounds.accumulation_roundings(len(batches))),
        context=f"{case}; {len(batches)} weighted backward calls through torch.compile(backend={backend!r}) vs eager",
    )


def check_compiled_windows_match_full_batch_steps(case: Case, steps: int, backend: str) -> None:
    """Windows of zero_grad, accumulate and SGD step through the compiled model equal full-batch steps from the same θ."""
    __tracebackhide__ = True
    equivalence.check_windows_match_full_batch_steps(case, steps, wrap=lambda model: compiled(model, backend))


def compiled_graphs() -> int:
    """How many distinct graphs dynamo has compiled in this process (since its last reset)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"].get("unique_graphs", 0))


def check_compiled_optimizer_step_follows_documented_update(case: Case, spec: OptimizerSpec, backend: str) -> None:
    """torch.compile(optimizer.step) follows the documented update at every step, as the eager step does.

    Each optimizer instance is a new graph for dynamo, which after its recompile limit quietly runs
    the step eagerly; dynamo is reset first, and the check fails if no graph was compiled, so the
    compiled step is what gets checked.
    """
    __tracebackhide__ = True
    import torch._dynamo

    def compile_step(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        optimizer.step = torch.compile(optimizer.step, backend=backend)
        return optimizer

    torch._dynamo.reset()
    before = compiled_graphs()
    optimizer_steps.check_step_follows_documented_update(case, spec, 2, build=compile_step)
    if compiled_graphs() == before:
        raise AssertionError(f"torch.compile(optimizer.step) compiled no graph: the step ran eagerly; case: {case}; {spec}")
