"""DeepSpeed: a loop written against the engine (`engine.backward(loss); engine.step()`), run for real on CPU ranks.

A DeepSpeed "loop" to check is a function written as DeepSpeed's documentation shows it,
`loop(engine, loader, loss_fn, epochs)`. The checker builds, on each of W ranks (1 or 2, drawn),
the example's model and SGD, `deepspeed.initialize(model=…, optimizer=…, config=…)` with
`train_micro_batch_size_per_gpu=B`, `gradient_accumulation_steps=k`, the ZeRO stage, and a
sequential DataLoader over the rank's share of the dataset, and hands over the engine. The engine
does the accumulation itself: `engine.backward` divides each loss by gradient_accumulation_steps
and reduces the gradients across ranks at the boundary, `engine.step()` steps the optimizer only
there. The example is seen globally: a micro-batch is the W ranks' micro-batches together (WB
rows), and the reference is one full-batch step per window of k of them (the dataset divides
evenly among the ranks: a DistributedSampler would otherwise repeat rows to pad it).

The pipeline engine (`deepspeed.pipe.PipelineModule`, 2 stages on 2 ranks, one data-parallel
replica) runs `engine.train_batch()`, which pulls k micro-batches from the loader and steps once.
Set-up that the properties assume: SGD, no clipping (DeepSpeed clips at gradient_clipping, 1.0 by
default here, so the checker's config sets 0), no scheduler, float32.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from hypothesis import strategies as st

from properties.frameworks.cases import FrameworkCase, FrameworkObservation, with_call
from properties.frameworks.configuration import FRAMEWORKS, Configuration
from properties.models import ModelSpec
from properties.strategies import model_specs, seeds

FRAMEWORK = FRAMEWORKS["deepspeed"]
DOCS = "https://www.deepspeed.ai/getting-started/#training"
PIPELINE_DOCS = "https://www.deepspeed.ai/tutorials/pipeline/"
WORLD_SIZES = (1, 2)
# The measured set-ups: (world size, dataset rows, micro-batch per rank, k): a short last micro-batch, a short last window.
EDGE_SETUPS = ((1, 7, 2, 2), (1, 10, 2, 2), (2, 14, 2, 2), (1, 5, 2, 3))
PIPELINE_EDGE_SETUPS = ((8, 2, 2), (6, 1, 3))
EDGE_MODEL = ModelSpec("linear", 3, 1)
PIPELINE_MODEL = ModelSpec("mlp", 3, 1, hidden=2)


@dataclass(frozen=True, repr=False)
class DeepSpeedCase(FrameworkCase):
    """A FrameworkCase seen globally: `world_size` ranks, `replicas` of them data-parallel (W; 1 for the pipeline), each
    micro-batch the replicas' `micro_batch_size` rows together."""

    world_size: int = 1
    replicas: int = 1

    @property
    def micro_batch_size(self) -> int:
        """train_micro_batch_size_per_gpu: B, a rank's rows per micro-batch (the global micro-batch ÷ data-parallel ranks)."""
        return self.batch_size // self.replicas


def deepspeed_case(
    model: ModelSpec,
    rows: int,
    micro_batch: int,
    k: int,
    epochs: int = 1,
    seed: int = 0,
    *,
    world_size: int = 1,
    replicas: int | None = None,
) -> DeepSpeedCase:
    """N rows (a multiple of the data-parallel ranks), micro-batches of B per rank, float32: micro-batch i is the
    ranks' rows [iRB, (i+1)RB) of the dataset together (R data-parallel ranks: W, or 1 for the pipeline)."""
    import torch

    replicas = world_size if replicas is None else replicas
    example = DeepSpeedCase.of(model, rows, micro_batch * replicas, k, epochs, seed, dtype=torch.float32)
    return dataclasses.replace(example, world_size=world_size, replicas=replicas)


def base_config(example, stage: int) -> dict:
    """What the checker configures: B, k, the ZeRO stage, no clipping, a torch SGD allowed under ZeRO, quiet."""
    return {
        "train_micro_batch_size_per_gpu": example.micro_batch_size,
        "gradient_accumulation_steps": example.k,
        "zero_optimization": {"stage": stage},
        "zero_allow_untested_optimizer": True,
        "gradient_clipping": 0.0,
        "steps_per_print": 1_000_000,
        "wall_clock_breakdown": False,
    }


def engine_as_documented(engine, loader, loss_fn, epochs):
    """DeepSpeed's training loop: for each batch, loss = loss_fn(engine(x), y); engine.backward(loss); engine.step()."""
    for _ in range(epochs):
        for x, y in loader:
            loss = loss_fn(engine(x), y)
            engine.backward(loss)
            engine.step()


def divides_by_k_again(engine, loader, loss_fn, epochs):
    """The documented loop that divides the loss by gradient_accumulation_steps itself (engine.backward already does): 1/k²."""
    for _ in range(epochs):
        for x, y in loader:
            loss = loss_fn(engine(x), y) / engine.gradient_accumulation_steps()
            engine.backward(loss)
            engine.step()


def train_batch_as_documented(engine, loader, loss_fn, epochs):
    """The pipeline tutorial's loop: engine.train_batch(data_iter) once per k micro-batches, each epoch."""
    for _ in range(epochs):
        batches = iter(loader)
        for _ in range(len(loader) // engine.gradient_accumulation_steps()):
            engine.train_batch(data_iter=batches)


def deepspeed_hints(observation) -> list[str]:
    """The engine's accumulation in DeepSpeed's terms: where it steps and what engine.backward already divides by."""
    example, run = observation.example, observation.run
    if run.error is not None or not run.steps:
        return []
    hints = []
    from properties.frameworks.check import step_ratios

    ratios = [r for r in step_ratios(observation) if r == r]
    if ratios and all(abs(r * example.k - 1) < 1e-3 for r in ratios) and example.k > 1:
        hints.append(
            f"every step's gradient is 1/{example.k} of the window's: engine.backward(loss) already divides the loss by "
            f"gradient_accumulation_steps={example.k}; a loss divided by k before it is divided twice"
        )
    return hints


def observed(configuration_spec, example) -> FrameworkObservation:
    """Run the example on DeepSpeed's ranks and build the recipe checker's Run from their records."""
    import torch

    from properties.frameworks.deepspeed_ranks import RankFailure, ranks
    from properties.frameworks.deepspeed_run import Spec, train
    from properties.recipes.trace import Leak, Run, Step

    loop, config, kind = configuration_spec
    spec = Spec(loop, example, config(example), kind)
    run = Run(precision=torch.float32)
    try:
        records = ranks(example.world_size).run(train, spec)
    except RankFailure as failure:
        run.error, run.error_trace = failure, str(failure)
        return FrameworkObservation.of_run(run, example)
    failed = next((r for r in records if r.error is not None), None)
    if failed is not None:
        run.error = DeepSpeedError(f"{failed.error_type} on rank {records.index(failed)}")
        run.error_trace = failed.error
    counts = {len(record.steps) for record in records}
    if len(counts) > 1 and run.error is None:
        run.error = DeepSpeedError(f"the ranks stepped different numbers of times: {[len(r.steps) for r in records]}")
    for i in range(min(counts)):
        merged = [record.steps[i] for record in records]
        params, grads = {}, {}
        for step in merged:  # the pipeline's stages each hold their own parameters; data-parallel ranks hold them all
            params.update(step.params)
            grads.update(step.grads)
        rows = sum(step.rows for step in merged)
        run.steps.append(Step(rows=rows, params=params, grads=grads, lrs=merged[0].lrs))
    for after, name, magnitude in sorted({leak for record in records for leak in record.leaks}):
        run.leaks.append(Leak(after, name, magnitude))
    for record in records:
        run.final.update(record.final)
    run.rows = sum(record.rows for record in records)
    if kind == "engine" and run.error is None:
        run.error = diverged(records)
    return FrameworkObservation.of_run(run, example)


def diverged(records) -> DeepSpeedError | None:
    """Data-parallel replicas end with the same parameters, bit for bit (every rank applies the same reduced gradient);
    the error naming the first parameter on which a rank differs from rank 0, else None."""
    for rank, record in enumerate(records[1:], start=1):
        for name, value in records[0].final.items():
            other = record.final.get(name)
            if other is None or other.shape != value.shape or not bool((other == value).all()):
                gap = float((other - value).abs().max()) if other is not None and other.shape == value.shape else float("nan")
                return DeepSpeedError(f"rank {rank}'s final {name!r} differs from rank 0's (largest |difference| {gap:.3g})")
    return None


class DeepSpeedError(RuntimeError):
    """DeepSpeed or the loop raised on a rank (the rank's traceback is the run's error_trace)."""


def engine_cases(stage: int):
    """Examples for a ZeRO stage: world size 1–2, micro-batch B ≤ 3 per rank, N ≤ 8 rows per rank (so that the last
    micro-batch is short and the last window partial), k ≤ 3, 1–2 epochs, the model, the seed; float32."""

    def strategy(describe):
        models = model_specs(
            ["linear", "mlp", "tied", "embedding"], max_features=3, large_features=3, sparse=False, layouts=["contiguous"]
        )

        @st.composite
        def draw(draw_):
            world_size = draw_(st.sampled_from(WORLD_SIZES))
            rows_per_rank, micro = draw_(st.integers(1, 8)), draw_(st.integers(1, 3))
            k, epochs, seed = draw_(st.integers(1, 3)), draw_(st.integers(1, 2)), draw_(seeds())
            model = draw_(models)
            example = deepspeed_case(model, rows_per_rank * world_size, micro, k, epochs, seed, world_size=world_size)
            return with_call(example, describe)

        return draw()

    return strategy


def pipeline_cases(describe):
    """Pipeline examples: the MLP in 2 stages on 2 ranks, B ≤ 3, k ≤ 3, whole windows of equal micro-batches (train_batch
    pulls exactly k), 1–2 epochs, the seed; float32."""

    @st.composite
    def draw(draw_):
        micro, k, windows = draw_(st.integers(1, 3)), draw_(st.integers(1, 3)), draw_(st.integers(1, 2))
        epochs, seed = draw_(st.integers(1, 2)), draw_(seeds())
        example = deepspeed_case(PIPELINE_MODEL, micro * k * windows, micro, k, epochs, seed, world_size=2, replicas=1)
        return with_call(example, describe)

    return draw()


def engine_edges(describe):
    return [with_call(deepspeed_case(EDGE_MODEL, n, b, k, world_size=w), describe) for w, n, b, k in EDGE_SETUPS]


def pipeline_edges(describe):
    return [
        with_call(deepspeed_case(PIPELINE_MODEL, n, b, k, world_size=2, replicas=1), describe) for n, b, k in PIPELINE_EDGE_SETUPS
    ]


def stage_of(config: dict | None) -> int:
    """The ZeRO stage a user's config asks for (0 when it names none)."""
    return int(((config or {}).get("zero_optimization") or {}).get("stage", 0))


def deepspeed(loop=engine_as_documented, *, config: dict | None = None, name: str | None = None) -> Configuration:
    """A DeepSpeed engine configuration: `loop(engine, loader, loss_fn, epochs)` under the checker's config updated with
    `config` (its ZeRO stage is the configuration's key, 'zero-S', under which deviations are registered)."""
    stage = stage_of(config)
    extra = {key: value for key, value in (config or {}).items() if key != "zero_optimization"}
    zero = dict((config or {}).get("zero_optimization") or {})

    def configure(example):
        settings = base_config(example, stage)
        settings["zero_optimization"].update(zero)
        settings.update(extra)
        return settings

    loop_name = getattr(loop, "__name__", repr(loop))
    shown = "".join(f", {key}={value!r}" for key, value in extra.items())

    def call(example) -> str:
        ranks = f"{example.world_size} rank{'s' if example.world_size > 1 else ''}"
        return (
            f"{loop_name}(deepspeed.initialize(config={{train_micro_batch_size_per_gpu={example.micro_batch_size}, "
            f"gradient_accumulation_steps={example.k}, zero_optimization.stage={stage}{shown}}}) on {ranks}, "
            f"epochs={example.epochs})"
        )

    return Configuration(
        FRAMEWORK,
        f"zero-{stage}",
        name or f"engine.backward/engine.step, ZeRO stage {stage}, {loop_name}",
        run=None,
        call=call,
        documented=(
            "engine.backward scales the loss by 1/gradient_accumulation_steps; engine.step() steps the optimizer at the "
            "accumulation boundary (every gradient_accumulation_steps micro-batches) and averages gradients over ranks"
        ),
        source=DOCS,
        hints=deepspeed_hints,
        observe=lambda example: observed((loop, configure, "engine"), example),
        cases=engine_cases(stage),
        edges=engine_edges,
    )


def pipeline(loop=train_batch_as_documented, *, config: dict | None = None, name: str | None = None) -> Configuration:
    """The pipeline engine: the MLP as a PipelineModule of 2 stages on 2 ranks, `loop` calling engine.train_batch()."""
    extra = dict(config or {})
    loop_name = getattr(loop, "__name__", repr(loop))

    def configure(example):
        settings = base_config(example, 0)
        settings.update(extra)
        return settings

    def call(example) -> str:
        return (
            f"{loop_name}(deepspeed.initialize(model=PipelineModule(layers=[W₁, σ, W₂], num_stages=2), "
            f"config={{train_micro_batch_size_per_gpu={example.micro_batch_size}, gradient_accumulation_steps={example.k}}}) "
            f"on 2 ranks, epochs={example.epochs})"
        )

    return Configuration(
        FRAMEWORK,
        "pipeline",
        name or f"PipelineModule, 2 stages, engine.train_batch(), {loop_name}",
        run=None,
        call=call,
        documented=(
            "train_batch() pulls gradient_accumulation_steps micro-batches, runs them through the stages, scales the loss by "
            "1/gradient_accumulation_steps and steps once"
        ),
        source=PIPELINE_DOCS,
        hints=deepspeed_hints,
        observe=lambda example: observed((loop, configure, "pipeline"), example),
        cases=pipeline_cases,
        edges=pipeline_edges,
    )


CONFIGURATIONS = (
    deepspeed(name="engine.backward/engine.step as documented, ZeRO stage 0"),
    deepspeed(config={"zero_optimization": {"stage": 1}}, name="engine.backward/engine.step as documented, ZeRO stage 1"),
    deepspeed(config={"zero_optimization": {"stage": 2}}, name="engine.backward/engine.step as documented, ZeRO stage 2"),
    deepspeed(config={"zero_optimization": {"stage": 3}}, name="engine.backward/engine.step as documented, ZeRO stage 3"),
    pipeline(name="PipelineModule (2 stages on 2 ranks), engine.train_batch() as documented"),
)


def check_deepspeed(loop=engine_as_documented, *, config: dict | None = None, max_examples: int = 30):
    """Check a DeepSpeed loop `loop(engine, loader, loss_fn, epochs)` on 1–2 ranks under `config` (the checker sets
    B, k, no clipping; config's zero_optimization.stage picks the ZeRO stage, 0 by default).

    Raises FrameworkError with the shrunk counterexample, or KnownDeviation when only a registered
    DeepSpeed deviation fails; returns the Conformance otherwise.
    """
    __tracebackhide__ = True
    from properties.frameworks.check import check_framework

    return check_framework(deepspeed(loop, config=config), max_examples=max_examples)


__all__ = ["check_deepspeed", "deepspeed", "pipeline", "CONFIGURATIONS", "engine_as_documented", "train_batch_as_documented"]
