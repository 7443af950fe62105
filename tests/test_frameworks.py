"""The real frameworks, checked like any recipe: one optimizer step per window, each step's .grad the window's mean-loss gradient.

Each bundled configuration of the transformers Trainer, Lightning's Trainer, Accelerate and DeepSpeed runs
on CPU on the measured edge examples and on drawn ones; a configuration with a deviation
registered for the installed version (properties/frameworks/deviations.py) is a strict xfail, so
an upstream fix shows as XPASS. Skipped, with the install command, where a framework is missing.
"""

import subprocess
import sys

import pytest

from properties import profiles
from properties.frameworks import MODULES, configurations, missing
from properties.frameworks.configuration import FRAMEWORKS
from properties.frameworks.deviations import DEVIATIONS, registered

pytestmark = pytest.mark.frameworks

# Drawn examples per configuration, scaled from the Hypothesis profile: 3 under dev, 12 under ci, 60 under thorough.
EXAMPLES = profiles.examples(0.2)


def marks(framework: str, key: str, configuration=None) -> list:
    """Skip where the framework is missing or its version lacks the configuration; a strict xfail (raises=KnownDeviation)
    where a deviation is registered; DeepSpeed's marked `deepspeed` (run when selected: tests/conftest.py)."""
    from properties.frameworks.check import KnownDeviation

    selected = [pytest.mark.deepspeed] if framework == "deepspeed" else []
    reason = missing(framework) if configuration is None else configuration.missing()
    if reason is not None:
        return [*selected, pytest.mark.skip(reason=reason)]
    deviation = registered(framework, key, FRAMEWORKS[framework].version())
    return selected + ([pytest.mark.xfail(strict=True, raises=KnownDeviation, reason=deviation.reason)] if deviation else [])


CONFIGURATIONS = [
    pytest.param(configuration, marks=marks(name, configuration.key, configuration), id=configuration.id)
    for name in MODULES
    for configuration in configurations(name)
]

# The measured table: (framework, configuration, dataset rows, batch size, k, ‖.grad‖ ÷ ‖mean-loss gradient‖ per step).
# None where the ratio depends on the data (a window with the short last batch weighs its rows unequally; padded
# token sequences count unequal tokens in equal batches). A configuration ':tokens' runs on token sequences of
# lengths 3, 1, 4, 2, 5, 1, 3 … (check.EDGE_LENGTHS), loss = cross-entropy over the labels ≠ -100.
TABLE = [
    ("pytorch-lightning", "accumulate_grad_batches", 10, 2, 2, (1.0, 1.0, 0.5)),
    ("pytorch-lightning", "accumulate_grad_batches", 7, 3, 2, (1.0, 0.5)),
    ("transformers", "mean-loss", 7, 2, 2, (1.0, None)),
    ("transformers", "mean-loss", 5, 2, 3, (None,)),
    ("transformers", "num-items", 10, 2, 2, (1.0, 1.0, 1.0)),
    ("transformers", "num-items", 7, 3, 2, (1.0, 1.0)),
    ("transformers", "num-items", 7, 2, 2, (1.0, 1.0)),
    ("transformers", "num-items", 5, 2, 3, (1.0,)),
    ("transformers", "mean-loss:tokens", 10, 2, 2, (None, None, 1.0)),
    ("transformers", "mean-loss:tokens", 4, 2, 2, (None,)),
    ("transformers", "num-items:tokens", 10, 2, 2, (1.0, 1.0, 1.0)),
    ("transformers", "num-items:tokens", 7, 3, 2, (1.0, 1.0)),
    ("accelerate", "accumulate", 10, 2, 2, (1.0, 1.0, 0.5)),
    ("accelerate", "accumulate", 7, 3, 2, (1.0, 0.5)),
]


# The versions the table was measured on (the pinned ones): another version whose registered deviation differs is skipped.
MEASURED_ON = {"transformers": "5.24.0", "pytorch-lightning": "2.6.6", "accelerate": "1.15.0"}


def table_marks(framework: str, key: str) -> list:
    """marks() for the configuration 'framework:key', and a skip where the installed version registers another deviation."""
    configuration = configuration_of(framework, key)
    installed = FRAMEWORKS[framework].version()
    setting = key.split(":")[0]
    if installed is not None and registered(framework, setting, installed) != registered(
        framework, setting, MEASURED_ON[framework]
    ):
        deviation = registered(framework, setting, installed)
        reason = (
            f"the table was measured on {framework} {MEASURED_ON[framework]}; {installed} is registered as "
            f"{deviation.name if deviation else 'no deviation'} ({deviation.versions if deviation else 'none'})"
        )
        return [pytest.mark.skip(reason=reason)]
    return marks(framework, setting, configuration)


def configuration_of(framework: str, key: str):
    """The bundled configuration 'framework:key' ('transformers:mean-loss:tokens' for token data)."""
    return next(c for c in configurations(framework) if c.id == f"{framework}:{key}")


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_each_framework_configuration_steps_like_one_full_batch_step_per_window(configuration):
    from properties.frameworks.check import check_framework

    check_framework(configuration, max_examples=EXAMPLES)


@pytest.mark.parametrize(
    "framework, key, rows, batch_size, k, ratios",
    [
        pytest.param(
            *row,
            marks=table_marks(row[0], row[1]),
            id=f"{row[0]}:{row[1]}:N={row[2]},B={row[3]},k={row[4]}",
        )
        for row in TABLE
    ],
)
def test_the_measured_table_reproduces_on_the_installed_frameworks(framework, key, rows, batch_size, k, ratios):
    from properties.frameworks.cases import with_call
    from properties.frameworks.check import Search, edge_example

    configuration = configuration_of(framework, key)
    search = Search(configuration)
    example = with_call(edge_example(configuration, rows, batch_size, k), configuration.call)
    finding = search.finding(example, shrunk=False)
    verdict = finding.verdict
    if verdict.outcome == "pass":
        return
    assert len(verdict.ratios) == len(ratios), str(finding.error)
    for got, want in zip(verdict.ratios, ratios):
        assert (got != 1.0) if want is None else got == pytest.approx(want, rel=1e-9), (verdict.ratios, str(finding.error))
    raise finding.error


def lightning_deviation_shrunk():
    from properties.frameworks.check import check_configuration

    return check_configuration(
        configuration_of("pytorch-lightning", "accumulate_grad_batches"), max_examples=EXAMPLES, shrink_deviation=True
    )


@pytest.mark.skipif(missing("pytorch-lightning") is not None, reason=str(missing("pytorch-lightning")))
def test_a_shrunk_counterexample_is_stated_in_the_framework_s_own_terms():
    result = lightning_deviation_shrunk()
    assert result.deviation is not None and result.deviation.shrunk
    message = str(result.deviation.error)
    counterexample = message.splitlines()[1]
    assert counterexample.startswith(
        "  counterexample (shrunk): Trainer(accumulate_grad_batches=2, max_epochs=1).fit(Regressor(model), "
        "DataLoader(dataset, batch_size=1)); dataset of 1 row → batches [1], windows [1]; model Linear(1→1"
    ), message
    assert "registered deviation of pytorch-lightning" in message and "issues/19987" in message
    assert message.rstrip().endswith("per step: 0.5"), message


@pytest.mark.parametrize(
    "framework, check, target, bundled",
    [
        ("pytorch-lightning", "check_lightning", "Regressor", "accumulate_grad_batches"),
        ("transformers", "check_trainer", "ItemCountRegressor", "num-items"),
        ("accelerate", "check_accelerate", "accumulate_as_documented", "accumulate"),
        pytest.param("deepspeed", "check_deepspeed", "engine_as_documented", "zero-0", marks=pytest.mark.deepspeed),
    ],
)
def test_code_written_against_each_framework_s_documented_api_is_checked_as_it_is(framework, check, target, bundled):
    from properties.frameworks import KnownDeviation, module

    reason = configuration_of(framework, bundled).missing()
    if reason is not None:
        pytest.skip(reason)
    adapter = module(framework)
    subject = adapter.modules()[target] if framework == "pytorch-lightning" else getattr(adapter, target)
    deviation = registered(framework, bundled, FRAMEWORKS[framework].version())
    if deviation is None:
        getattr(adapter, check)(subject, max_examples=EXAMPLES)
        return
    with pytest.raises(KnownDeviation) as raised:  # not keyed in the table: recognised by the behaviour it registers
        getattr(adapter, check)(subject, max_examples=EXAMPLES)
    assert raised.value.deviation is deviation


@pytest.mark.parametrize(
    "framework", [pytest.param(name, marks=[pytest.mark.deepspeed] if name == "deepspeed" else []) for name in MODULES]
)
def test_a_framework_run_leaves_no_global_state_behind(framework):
    import gc
    import logging
    import os
    import random

    from properties.frameworks.check import Search
    from properties.frameworks.sandbox import FRAMEWORK_LOGGERS, accelerate_singletons

    reason = missing(framework)
    if reason is not None:
        pytest.skip(reason)
    search = Search(configurations(framework)[0])
    search.observe(search.edge_examples()[0])  # the framework is imported now: compare a second run

    def state():
        return (
            dict(os.environ),
            random.getstate(),
            {name: logging.getLogger(name).level for name in FRAMEWORK_LOGGERS},
            [dict(shared) for shared in accelerate_singletons()],
            gc.get_freeze_count(),
        )

    singletons = accelerate_singletons()
    for shared in singletons:  # someone else's Accelerate state: hidden from the run, there again afterwards
        shared["left by the caller"] = True
    try:
        before = state()
        observation = search.observe(search.edge_examples()[1])
        after = state()
    finally:
        for shared in singletons:
            shared.pop("left by the caller", None)
    assert observation.run.error is None, observation.run.error_trace
    assert after == before


def test_the_deviations_table_names_real_frameworks_configurations_properties_and_behaviours():
    from properties.frameworks.behaviours import BEHAVIOURS
    from properties.recipes.checks import BY_NAME

    for deviation in DEVIATIONS:
        assert deviation.framework in FRAMEWORKS, deviation
        keys = {c.key for c in configurations(deviation.framework)}
        assert set(deviation.configurations) <= keys, (deviation.name, keys)
        assert set(deviation.properties) <= set(BY_NAME) and deviation.behaviour in BEHAVIOURS, deviation.name
        assert deviation.source and deviation.what and deviation.kind in ("documented", "upstream report", "found by this suite")
        assert deviation.affects(deviation.since) and not deviation.affects("0.0.1") and not deviation.affects(None)
        if deviation.measured:  # the measured boundary names the releases on each side of it
            assert deviation.since in deviation.measured, deviation.name
            assert deviation.fixed is None or deviation.fixed in deviation.measured, deviation.name


def test_importing_the_frameworks_package_imports_no_framework_and_no_torch():
    code = (
        "import sys, properties.frameworks as f; [f.missing(n) for n in f.MODULES]; "
        "print(sorted({'torch', 'transformers', 'pytorch_lightning', 'accelerate', 'deepspeed'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def installed_metadata(monkeypatch, torch_version: str, requires: dict):
    """importlib.metadata answering `torch_version` for torch and `requires` for the frameworks, as pip would."""
    import importlib.metadata

    real_version, real_requires = importlib.metadata.version, importlib.metadata.requires
    versions = {"torch": torch_version, "transformers": "5.24.0", "pytorch-lightning": "2.6.6", "accelerate": "1.15.0"}
    monkeypatch.setattr(importlib.metadata, "version", lambda name: versions.get(name) or real_version(name))
    monkeypatch.setattr(importlib.metadata, "requires", lambda name: requires[name] if name in requires else real_requires(name))


TRANSFORMERS_5_REQUIRES = ['torch>=2.6; extra == "torch"', 'torchvision; extra == "vision"', 'torch>=2.6; extra == "dev"']


@pytest.mark.parametrize("torch_version, refused", [("2.1.2+cu121", True), ("2.6.0", False), ("2.13.0+cpu", False)])
def test_a_framework_whose_declared_torch_floor_the_installed_torch_is_below_is_missing_saying_so(
    monkeypatch, torch_version, refused
):
    """transformers 5 declares torch>=2.6 only under its torch extra, so pip installs it beside torch 2.1.2, where it
    refuses to build a model: missing() reads the floor from its metadata and says what to install."""
    from properties.frameworks.configuration import Framework

    installed_metadata(monkeypatch, torch_version, {"transformers": TRANSFORMERS_5_REQUIRES, "accelerate": ["torch>=2.0.0"]})
    framework = Framework("transformers", "json")  # an importable module: the installed check reads the metadata
    assert framework.torch_floor() == ">=2.6"
    reason = framework.missing()
    if refused:
        assert reason is not None and "transformers 5.24.0 needs torch>=2.6" in reason and torch_version in reason, reason
    else:
        assert reason is None, reason
    assert Framework("accelerate", "json").missing() is None


# DeepSpeed's measured set-ups (deepspeed_engine.EDGE_SETUPS: Linear(3→1), float32, seed 0, one epoch, SGD(lr=0.1)):
# (world size, dataset rows, micro-batch per rank, k) → the failing properties and ‖.grad‖ ÷ ‖window's mean-loss gradient‖.
DEEPSPEED_TABLE = [
    ((1, 7, 2, 2), ("gradients",), (1.0, 0.761)),  # micro-batches [2, 2 | 2, 1]: the short one weighs as much as a full one
    ((1, 10, 2, 2), ("steps", "parameters"), (1.0, 1.0)),  # [2, 2 | 2, 2 | 2]: the epoch's last window is never stepped
    ((2, 14, 2, 2), ("gradients",), (1.0, 0.869)),  # 2 ranks: global micro-batches [4, 4 | 4, 2]
    ((1, 5, 2, 3), ("gradients",), (1.07,)),  # [2, 2, 1]
]


@pytest.mark.deepspeed
@pytest.mark.skipif(missing("deepspeed") is not None, reason=str(missing("deepspeed")))
@pytest.mark.parametrize(
    "setup, properties, ratios", [pytest.param(*row, id="W={},N={},B={},k={}".format(*row[0])) for row in DEEPSPEED_TABLE]
)
def test_deepspeed_s_measured_set_ups_reproduce_on_the_installed_version(setup, properties, ratios):
    from properties.frameworks.check import Search
    from properties.frameworks.deepspeed_engine import EDGE_SETUPS

    search = Search(configuration_of("deepspeed", "zero-0"))
    example = search.edge_examples()[EDGE_SETUPS.index(setup)]
    finding = search.finding(example, shrunk=False)
    assert finding.verdict.outcome == "deviation", str(finding.error)
    assert finding.verdict.properties == properties, str(finding.error)
    assert finding.verdict.ratios == pytest.approx(ratios, rel=1e-9), str(finding.error)


@pytest.mark.deepspeed
@pytest.mark.skipif(missing("deepspeed") is not None, reason=str(missing("deepspeed")))
def test_deepspeed_on_two_ranks_with_equal_micro_batches_is_one_full_batch_step_per_window():
    from properties.frameworks.check import Search
    from properties.frameworks.deepspeed_engine import EDGE_MODEL, deepspeed_case

    configuration = configuration_of("deepspeed", "zero-0")
    search = Search(configuration)
    example = deepspeed_case(EDGE_MODEL, 16, 2, 2, world_size=2)  # 2 ranks × micro-batches [2, 2 | 2, 2]
    observation = search.observe(example)
    assert search.verdict(observation).outcome == "pass", str(search.finding(example, shrunk=False).error)
    assert len(observation.run.steps) == 2 and observation.run.step_rows == [8, 16]


@pytest.mark.deepspeed
@pytest.mark.skipif(missing("deepspeed") is not None, reason=str(missing("deepspeed")))
def test_the_checking_process_never_imports_deepspeed_nor_starts_a_process_group():
    import torch.distributed as dist

    from properties.frameworks.check import Search

    loaded = set(sys.modules)  # the transformers Trainer and Accelerate import DeepSpeed themselves where it is installed
    search = Search(configuration_of("deepspeed", "zero-0"))
    search.observe(search.edge_examples()[0])
    assert not {name for name in set(sys.modules) - loaded if name.split(".")[0] == "deepspeed"}
    assert not (dist.is_available() and dist.is_initialized())
