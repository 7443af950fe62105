"""The version table answers for each torch version (a torch that breaks it: tests/meta/test_version_controls.py)."""

import sys

import pytest

from properties import defects, observe, versions
from properties.mutants import autograd


@pytest.mark.parametrize(
    "version, zero_grad_sets_none, has_hook, has_step_hooks, has_cpu_scaler",
    [
        ("1.13.1", False, False, False, False),
        ("2.0.0", True, False, True, False),
        ("2.1.0", True, True, True, False),
        ("2.3.0", True, True, True, True),
        ("2.13.0", True, True, True, True),
        ("2.14.1", True, True, True, True),
    ],
)
def test_the_version_table_gives_each_version_its_documented_behaviour(
    version, zero_grad_sets_none, has_hook, has_step_hooks, has_cpu_scaler
):
    assert versions.ZERO_GRAD_DEFAULT_SET_TO_NONE.expected(version) is zero_grad_sets_none
    assert versions.POST_ACCUMULATE_GRAD_HOOK.expected(version) is has_hook
    assert versions.OPTIMIZER_STEP_HOOKS.expected(version) is has_step_hooks
    assert versions.CPU_GRAD_SCALER.expected(version) is has_cpu_scaler


@pytest.mark.parametrize("change", versions.CHANGES, ids=lambda change: change.name)
def test_a_change_takes_effect_exactly_at_its_version(change):
    major, minor, patch = versions.parse_version(change.since)
    last_before = (major, minor - 1, 99) if minor else (major - 1, 99, 99)
    assert change.expected(last_before) == change.before
    assert change.expected(change.since) == change.after
    assert change.expected((major, minor, patch)) == change.after
    assert change.expected(f"{change.since}rc1") == change.after, "a release candidate counts as its release"
    assert change.expected(f"{change.since}+cpu") == change.after


@pytest.mark.parametrize(
    "text, parsed",
    [
        ("2.13.0+cpu", (2, 13, 0)),
        ("1.13.1+cu117", (1, 13, 1)),
        ("2.0.0rc1", (2, 0, 0)),
        ("2.1", (2, 1, 0)),
        ("2.15.0.dev20260101+cu130", (2, 15, 0)),
    ],
)
def test_parse_version_reads_the_release_and_ignores_local_and_pre_release_parts(text, parsed):
    assert versions.parse_version(text) == parsed
    assert versions.version_text(parsed) == ".".join(map(str, parsed))


def test_the_installed_torch_behaves_as_the_version_table_documents():
    disagreements = [
        f"{record['name']}: observed {record['observed']!r}, documented {record['documented']!r}"
        for record in observe.observe()["behaviours"]
        if "documented" in record and record["observed"] != record["documented"]
    ]
    assert not disagreements, f"torch {versions.version_text(versions.INSTALLED)}: " + "; ".join(disagreements)


def test_the_observe_probe_reports_a_reverted_zero_grad_default_as_a_disagreement(monkeypatch):
    autograd.ZERO_GRAD_OLD_DEFAULT.apply(monkeypatch)
    monkeypatch.setattr(versions, "INSTALLED", (2, 13, 0))
    records = {record["name"]: record for record in observe.observe()["behaviours"]}
    for name in ("Module.zero_grad() sets .grad to None", "Optimizer.zero_grad() sets .grad to None"):
        assert records[name]["observed"] is False and records[name]["documented"] is True, records[name]


@pytest.mark.parametrize("version, skipped", [((2, 0, 1), True), ((2, 1, 0), False)], ids=["2.0.1", "2.1.0"])
def test_a_property_needing_a_newer_torch_is_skipped_with_the_reason(monkeypatch, version, skipped):
    monkeypatch.setattr(versions, "INSTALLED", version)
    mark = versions.requires(versions.POST_ACCUMULATE_GRAD_HOOK)
    assert mark.args == (skipped,)
    assert mark.kwargs["reason"] == (
        f"torch {versions.version_text(version)}: Tensor.register_post_accumulate_grad_hook exists only from torch 2.1.0"
    )


def test_a_torch_without_pipelining_skips_the_pipeline_family_with_the_reason(monkeypatch):
    from properties.distributed import pipeline

    monkeypatch.setitem(sys.modules, "torch.distributed.pipelining", None)  # what torch < 2.4 does: no such module
    reason = pipeline.unavailable_reason()
    assert reason is not None and "has no torch.distributed.pipelining" in reason, reason


@pytest.mark.parametrize("change", versions.CHANGES, ids=lambda change: change.name)
def test_every_change_names_the_releases_measured_on_each_side_of_it(change):
    major, minor, _ = versions.parse_version(change.since)
    before = f"{major}.{minor - 1}." if minor else "1.13."
    assert f"{major}.{minor}." in change.measured and before in change.measured, change.measured


def test_a_torch_before_the_pipeline_family_s_minimum_skips_it_with_the_reason(monkeypatch):
    from properties.distributed import pipeline

    monkeypatch.setattr(pipeline, "INSTALLED", (2, 6, 0))
    reason = pipeline.unavailable_reason()
    assert reason is not None and "runs from torch 2.10.0" in reason, reason


@pytest.mark.parametrize("deviation", defects.DEVIATIONS, ids=lambda deviation: deviation.name)
def test_every_registered_torch_deviation_names_the_releases_it_was_measured_on(deviation):
    assert deviation.measured and "tools.matrix" in deviation.measured, deviation.name
    assert (
        versions.version_text(versions.parse_version(deviation.since))[:4] in deviation.measured or "oldest" in deviation.measured
    )
