"""Known, documented deviations of the training frameworks, keyed by version: the one place the suite registers them.

Each entry says which framework versions, which configurations, which recipe properties it
breaks, what the framework does instead (`behaviour`, a model in properties/frameworks/behaviours.py
that must reproduce every step's gradient for a failure to count as this deviation), what goes
wrong, and where it is documented or reported. A property test that hits a registered deviation
runs as a strict xfail, so an upstream fix shows as XPASS; a failure no entry explains fails as
any counterexample does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from properties.versions import within


@dataclass(frozen=True)
class Deviation:
    """A framework behaviour that differs from one full-batch step per window, from version `since` until `fixed`.

    `since` is the earliest version known to behave so (an upstream report's, or the earliest
    checked here); `fixed` the first that no longer does (None: not fixed). `measured` says how the
    boundary was measured: the releases run on each side of it and the run that ran them (empty:
    not measured; docs/frameworks.md, "Several versions").
    """

    name: str
    framework: str
    since: str
    fixed: Optional[str]
    configurations: tuple[str, ...]
    properties: tuple[str, ...]
    behaviour: str
    what: str
    source: str
    kind: str
    measured: str = ""

    def affects(self, version: Optional[str]) -> bool:
        """Whether the given framework version (None: not installed) is one this deviation is registered for."""
        return version is not None and within(version, self.since, self.fixed)

    @property
    def versions(self) -> str:
        """'≥ 2.0.0' or '2.0.0 – 2.7.0 (fixed)'."""
        return f"≥ {self.since}" if self.fixed is None else f"{self.since} – {self.fixed} (fixed in {self.fixed})"

    @property
    def reason(self) -> str:
        """One line for an xfail: the framework, its versions and the deviation (the table has its source)."""
        return f"registered deviation of {self.framework} {self.versions}: {self.name} (properties/frameworks/deviations.py)"


LIGHTNING_PARTIAL_WINDOW = Deviation(
    name="every batch's loss is divided by accumulate_grad_batches, also in a short window",
    framework="pytorch-lightning",
    since="2.0.0",
    fixed=None,
    configurations=("accumulate_grad_batches",),
    properties=("gradients", "parameters"),
    behaviour="means ÷ k",
    what=(
        "the window at the end of an epoch, of fewer than k batches, is stepped, but each batch's mean loss is still "
        "divided by k: that window's gradient is (its batches ÷ k)× the window's mean-loss gradient; a short last batch "
        "inside a full window weighs as much as a full one"
    ),
    source=(
        "https://github.com/Lightning-AI/pytorch-lightning/issues/19987 (open: 'Handle gradient accumulations at the end "
        "of epoch differently'); pytorch_lightning/loops/optimization/automatic.py: ClosureResult divides the loss by "
        "trainer.accumulate_grad_batches"
    ),
    kind="upstream report",
    measured=(
        "2.0.0 (the first 2.x release; it imports pkg_resources, so beside setuptools<81), 2.6.0 and 2.6.6 show it on every "
        "edge example (N=10, B=2, k=2: 1, 1, 0.5); not fixed in 2.6.6. Earliest checked: 2.0.0. Run: the edge examples "
        "(check.Search) in an environment of torch 2.13.0+cpu and that release alone; python -m tools.conformance for "
        "2.6.0 and 2.6.6 (reports/conformance.md)"
    ),
)

TRANSFORMERS_MEAN_LOSS = Deviation(
    name="a per-batch mean loss is divided by the window's number of batches",
    framework="transformers",
    since="4.55.0",
    fixed=None,
    configurations=("mean-loss",),
    properties=("gradients", "parameters"),
    behaviour="means ÷ window batches",
    what=(
        "a model whose loss ignores num_items_in_batch (accepts_loss_kwargs = False) gets each batch's mean loss "
        "divided by the number of batches in the window (len(batch_samples)): right only when every batch of the "
        "window holds as many items; a window with the short last batch weighs its rows unequally"
    ),
    source=(
        "Trainer.compute_loss docstring: a loss that is 'a per-batch mean' is divided 'by the number of gradient "
        "accumulation steps'; https://huggingface.co/docs/transformers/en/grad_accumulation (Loss scaling: take "
        "num_items_in_batch); https://huggingface.co/blog/gradient_accumulation; trainer.py: training_step divides by "
        "current_gradient_accumulation_steps = len(batch_samples)"
    ),
    kind="documented",
    measured=(
        "4.54.1 does not show it: each batch's mean loss is divided by k, also in a short window (N=10, B=2, k=2: 1, 1, "
        "0.5; the 'means ÷ k' behaviour); 4.55.0 shows it (N=10, B=2, k=2: 1, 1, 1; N=7, B=2, k=2: 1, 0.761), as do 5.24.0 "
        "(python -m tools.conformance: reports/conformance.md); not fixed in 5.24.0. Run: the edge examples (check.Search) in "
        "an environment of torch 2.13.0+cpu, that transformers release and accelerate 1.12.0"
    ),
)

ACCELERATE_DIVIDES_BY_K = Deviation(
    name="accelerator.backward divides every loss by gradient_accumulation_steps, also in a short window",
    framework="accelerate",
    since="1.0.0",
    fixed=None,
    configurations=("accumulate", "plugin", "plugin-sync-each-batch"),
    properties=("gradients", "parameters"),
    behaviour="means ÷ k",
    what=(
        "accumulate() steps the window that the end of the dataloader cuts short, but backward() has divided each of "
        "its batches' mean loss by k: that window's gradient is (its batches ÷ k)× the window's mean-loss gradient; a "
        "short last batch inside a full window weighs as much as a full one"
    ),
    source=(
        "Accelerator.backward docstring: 'Scales the gradients in accordance to the GradientAccumulationPlugin' "
        "(loss / gradient_accumulation_steps); https://huggingface.co/docs/accelerate/usage_guides/gradient_accumulation"
    ),
    kind="documented",
    measured=(
        "1.0.0, 1.12.0 and 1.15.0 show it on every edge example (N=10, B=2, k=2: 1, 1, 0.5); not fixed in 1.15.0. Earliest "
        "checked: 1.0.0. Run: the edge examples (check.Search) in an environment of torch 2.13.0+cpu and accelerate 1.0.0; "
        "python -m tools.conformance for 1.12.0 and 1.15.0 (reports/conformance.md)"
    ),
)

ACCELERATE_NO_DATALOADER_SYNC = Deviation(
    name="with sync_with_dataloader=False, windows run on across the end of the dataloader",
    framework="accelerate",
    since="1.0.0",
    fixed=None,
    configurations=("plugin-no-dataloader-sync",),
    properties=("steps", "gradients", "parameters"),
    behaviour="windows across epochs, means ÷ k",
    what=(
        "the end of the dataloader does not end a window: an epoch's short last window is not stepped, its gradient is "
        "carried into the next epoch's first window, and the last epoch's is never applied"
    ),
    source=(
        "GradientAccumulationPlugin docstring: sync_with_dataloader, 'Whether to synchronize setting the gradients when "
        "at the end of the dataloader. Should only be set to False if you know what you're doing.'"
    ),
    kind="documented",
    measured=(
        "1.0.0, 1.12.0 and 1.15.0 show it on every edge example (N=10, B=2, k=2: 2 steps, the last batch never applied); "
        "not fixed in 1.15.0. Earliest checked: 1.0.0. Run: as for the short-window deviation"
    ),
)

TRANSFORMERS_UNSHIFTED_COUNT = Deviation(
    name="num_items_in_batch counts unshifted labels for a causal LM whose loss_type is None (GPT2LMHeadModel)",
    framework="transformers",
    since="4.52.1",
    fixed=None,
    configurations=("num-items:no-loss-type",),
    properties=("gradients", "parameters"),
    behaviour="Σ CE ÷ unshifted count",
    what=(
        "the Trainer counts num_items_in_batch over labels[..., 1:] only when LOSS_MAPPING[model.loss_type] is "
        "ForCausalLMLoss; GPT2LMHeadModel's loss_type is None (set from its class name, which names no loss), and its "
        "loss_function falls back to ForCausalLMLoss, which shifts. The window's Σ CE over shifted labels is divided "
        "by the count of unshifted ones, one too many per row: each step's gradient is (shifted ÷ unshifted count)× "
        "the window's mean-loss gradient, whatever k (0.5× for one sequence of two tokens)"
    ),
    source=(
        "transformers trainer.py: Trainer._get_num_items_in_batch and _loss_shifts_labels; modeling_utils.py: "
        "PreTrainedModel.loss_type and loss_function; the shift was added for the causal LMs whose loss_type names "
        "ForCausalLM by https://github.com/huggingface/transformers/pull/46204"
    ),
    kind="found by this suite",
    measured=(
        "4.51.3 does not show it: its run stops after epochs × (batches ÷ k) steps, so the last short window is never "
        "stepped (N=10, B=2, k=2: 0.636, 0.667 and no third step; 4.49.0 the same; 4.48.0's GPT-2 takes no "
        "num_items_in_batch); 4.52.1 shows it (0.636, 0.667, 0.778), as do 4.54.1, 4.55.0 and 5.24.0; not fixed in 5.24.0. "
        "Before 5.10.1 the count is unshifted for every causal LM: Llama's own loss shows the same behaviour on 4.54.1, "
        "4.55.0 and 5.9.0 (not registered there: it fails); from 5.10.1 its count is shifted and it passes. Run: the edge examples (check.Search) in an "
        "environment of torch 2.13.0+cpu, that transformers release and accelerate 1.12.0"
    ),
)

TRANSFORMERS_BEFORE_ITEM_COUNT = Deviation(
    name="before num_items_in_batch: windows run across epoch ends and every batch's mean loss is divided by k",
    framework="transformers",
    since="4.45.2",
    fixed="4.46.0",
    configurations=("mean-loss",),
    properties=("steps", "gradients", "parameters"),
    behaviour="Trainer < 4.46: windows across epochs, means ÷ k",
    what=(
        "the Trainer counts batches over the whole run: a step comes when that count reaches a multiple of k (or at the "
        "last batch of an epoch of at most k batches), so an epoch's short last window is not stepped but carried into the "
        "next epoch, and the run stops after epochs × max(batches ÷ k, 1) steps, the last window's gradient never applied; "
        "accelerator.backward divides every batch's mean loss by k, so a window whose batches hold unequal rows or tokens "
        "weighs them unequally (the bug class the Trainer's num_items_in_batch fixed)"
    ),
    source=(
        "https://huggingface.co/blog/gradient_accumulation (the fix: num_items_in_batch, "
        "https://github.com/huggingface/transformers/pull/34198, in 4.46.0); transformers 4.45.2 trainer.py: "
        "_inner_training_loop, total_batched_samples % args.gradient_accumulation_steps == 0 or "
        "is_last_step_and_steps_less_than_grad_acc"
    ),
    kind="upstream report",
    measured=(
        "4.45.2 shows it (every edge example, and the drawn ones of python -m tools.conformance: reports/conformance.md); "
        "4.46.0 does not: its training_step multiplies the loss by k before accelerator.backward divides it, each step "
        "k× the window's mean-loss gradient (N=10, B=2, k=2: 2, 2), with accelerate 1.0.1 as with 1.12.0; 4.46.2 too. "
        "(4.48.0 matches it again on the edge examples, its drawn examples not run: not registered there.) Earliest "
        "checked: 4.45.2. Run: the edge examples (check.Search) in an environment of torch 2.13.0+cpu, that release and "
        "accelerate 1.12.0"
    ),
)

DEEPSPEED_ENGINE_DIVIDES_BY_K = Deviation(
    name="engine.backward divides every micro-batch's loss by gradient_accumulation_steps; windows run on across epochs",
    framework="deepspeed",
    since="0.14.4",
    fixed=None,
    configurations=("zero-0", "zero-1", "zero-2", "zero-3"),
    properties=("steps", "gradients", "parameters"),
    behaviour="windows across epochs, means ÷ k",
    what=(
        "engine.backward divides each micro-batch's mean loss by gradient_accumulation_steps, whatever its rows: a short "
        "micro-batch weighs as much as a full one (on W ranks, each global micro-batch of W ranks' rows is its ranks' mean "
        "÷ k). engine.step() steps when its micro-step count reaches a multiple of k, counted over the whole run: the "
        "short window at the end of an epoch is not stepped, its gradient is carried into the next epoch's first window, "
        "and the last epoch's is never applied"
    ),
    source=(
        "DeepSpeedEngine.backward docstring: 'scale_wrt_gas: whether to scale gradients and return value by gradient "
        "accumulation steps' (loss / gradient_accumulation_steps()); DeepSpeedEngine.is_gradient_accumulation_boundary: "
        "(micro_steps + 1) % gradient_accumulation_steps() == 0; https://www.deepspeed.ai/docs/config-json/#batch-size-"
        "related-parameters"
    ),
    kind="documented",
    measured=(
        "0.14.4, 0.15.0, 0.16.0, 0.18.0 and 0.19.8 show it on every edge example of ZeRO stages 0 and 1 (N=7, B=2, k=2: 1, "
        "0.761; N=10, B=2, k=2: 1, 1 and no third step; N=14, B=2 on 2 ranks, k=2: 1, 0.869; N=5, B=2, k=3: 1.07), of stage 2 "
        "but on 0.18.0 (its step holds only part of the window's gradient, N=7: 0.818, 0.122: a failure, not this "
        "deviation) and of stage 3 from 0.16.0 (before it, ZeRO-3 on CPU runs numactl, not installed here); not fixed in "
        "0.19.8. Earliest checked: 0.14.4; 0.14.1–0.14.3 do not import beside torch 2.13.0 (torch.distributed.elastic "
        "no longer has _get_socket_with_port) and 0.14.0's CPU accelerator needs intel_extension_for_pytorch (its newest "
        "release, 2.8.0, is built for torch 2.8). Run: the edge examples (check.Search) in an environment of torch "
        "2.13.0+cpu and that release alone (0.14.4, 0.15.0); python -m tools.conformance for 0.16.0, 0.18.0 and 0.19.8"
    ),
)

DEVIATIONS = (
    LIGHTNING_PARTIAL_WINDOW,
    TRANSFORMERS_MEAN_LOSS,
    TRANSFORMERS_UNSHIFTED_COUNT,
    TRANSFORMERS_BEFORE_ITEM_COUNT,
    ACCELERATE_DIVIDES_BY_K,
    ACCELERATE_NO_DATALOADER_SYNC,
    DEEPSPEED_ENGINE_DIVIDES_BY_K,
)


def registered(framework: str, configuration: str, version: Optional[str]) -> Optional[Deviation]:
    """The deviation registered for this configuration of this framework version, or None."""
    for deviation in DEVIATIONS:
        if deviation.framework == framework and configuration in deviation.configurations and deviation.affects(version):
            return deviation
    return None


def of_framework(framework: str, version: Optional[str]) -> tuple[Deviation, ...]:
    """Every deviation registered for this framework version (whatever the configuration)."""
    return tuple(d for d in DEVIATIONS if d.framework == framework and d.affects(version))
