"""The conformance report renders each framework property's result, counterexample and documented behaviour."""

from tools.conformance import PROPERTY_NAMES, render_markdown


def test_the_conformance_report_shows_each_property_s_result_the_counterexample_and_the_documented_behaviour():
    results = {name: "pass" for name in PROPERTY_NAMES} | {"gradients": "known deviation", "parameters": "known deviation"}
    deviation = {
        "properties": ["gradients", "parameters"],
        "shrunk": True,
        "counterexample": "Trainer(accumulate_grad_batches=2, max_epochs=1).fit(Regressor(model), …); dataset of 1 row",
        "ratios": [0.5],
    }
    report = {
        "torch": "2.13.0+cpu",
        "python": "3.11.7",
        "examples": 40,
        "seconds": 1.0,
        "frameworks": {"pytorch-lightning": "2.6.6", "accelerate": None},
        "missing": {"accelerate": "accelerate is not installed"},
        "configurations": [
            {
                "framework": "pytorch-lightning",
                "version": "2.6.6",
                "key": "accumulate_grad_batches",
                "id": "pytorch-lightning:accumulate_grad_batches",
                "configuration": "Trainer(accumulate_grad_batches=k), LightningModule as documented",
                "examples": 51,
                "results": results,
                "failure": None,
                "deviation": deviation,
                "registered_deviation": {
                    "name": "n",
                    "versions": "≥ 2.0.0",
                    "what": "divided by k",
                    "source": "issues/19987",
                    "kind": "upstream report",
                    "reproduced": True,
                },
                "documented": "accumulates over k batches",
                "source": "docs",
            }
        ],
        "measured": [
            {
                "framework": "pytorch-lightning",
                "key": "accumulate_grad_batches",
                "id": "pytorch-lightning:accumulate_grad_batches",
                "dataset_rows": 7,
                "batch_size": 3,
                "k": 2,
                "windows": "[3, 3] [1]",
                "outcome": "deviation",
                "ratios": [1.0, 0.5],
            }
        ],
    }
    text = render_markdown(report)
    row = "| pytorch-lightning | 2.6.6 | Trainer(accumulate_grad_batches=k), LightningModule as documented | " + " | ".join(
        ["✓ pass"] * 5 + ["⚠ known deviation"] * 2
    )
    assert row in text and "pytorch-lightning 2.6.6, accelerate (not installed)" in text, text
    assert "accelerate: not checked — accelerate is not installed" in text
    assert "Documented: accumulates over k batches (docs)" in text and "Source: issues/19987" in text
    assert "`Trainer(accumulate_grad_batches=2, max_epochs=1).fit(Regressor(model), …); dataset of 1 row`" in text
    assert "| 7, 3, 2 → [3, 3] [1] | ⚠ known deviation | 1, 0.5 |" in text


def run_report(transformers: str, lightning: str, results: dict, label: str) -> dict:
    """One environment's conformance.json: a Trainer configuration, and one its version lacks."""
    return {
        "label": label,
        "torch": "2.13.0+cpu",
        "python": "3.11.7",
        "examples": 40,
        "seconds": 2.0,
        "frameworks": {"transformers": transformers, "pytorch-lightning": lightning},
        "missing": {"pytorch-lightning": "pytorch-lightning is not installed"} if lightning is None else {},
        "configurations": [
            {
                "framework": "transformers",
                "version": transformers,
                "key": "mean-loss",
                "id": "transformers:mean-loss",
                "configuration": "Trainer, per-batch mean loss",
                "examples": 44,
                "results": results,
                "failure": None,
                "deviation": None,
                "registered_deviation": None,
                "documented": "divided by the window's batches",
                "source": "docs",
            }
        ],
        "unavailable": []
        if transformers.startswith("5.")
        else [
            {
                "framework": "transformers",
                "version": transformers,
                "key": "compute-loss-func",
                "id": "transformers:compute-loss-func",
                "configuration": "Trainer(compute_loss_func=…)",
                "reason": f"not available in transformers {transformers}: no compute_loss_func",
            }
        ],
        "measured": [
            {
                "framework": "transformers",
                "key": "mean-loss",
                "id": "transformers:mean-loss",
                "dataset_rows": 7,
                "batch_size": 2,
                "k": 2,
                "windows": "[2, 2] [2, 1]",
                "outcome": "pass" if transformers.startswith("5.") else "fail",
                "ratios": [1.0, 1.0],
            }
        ],
    }


def test_merged_runs_show_a_row_per_framework_version_and_configuration_and_each_deviation_s_measured_boundary(tmp_path):
    import json

    from properties.frameworks.deviations import DEVIATIONS
    from tools.conformance import main

    passing = {name: "pass" for name in PROPERTY_NAMES}
    failing = passing | {"steps": "fail"}
    for name, report in (
        ("pinned", run_report("5.24.0", "2.6.6", passing, "pinned")),
        ("old", run_report("4.45.2", None, failing, "older releases")),
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / "conformance.json").write_text(json.dumps(report), encoding="utf-8")

    assert main(["--merge", str(tmp_path / "pinned"), str(tmp_path / "old"), "--output", str(tmp_path / "merged")]) == 0
    text = (tmp_path / "merged" / "conformance.md").read_text(encoding="utf-8")
    merged = json.loads((tmp_path / "merged" / "conformance.json").read_text(encoding="utf-8"))

    assert [run["label"] for run in merged["runs"]] == ["pinned", "older releases"]
    assert "- pinned: transformers 5.24.0, pytorch-lightning 2.6.6; torch 2.13.0+cpu" in text, text
    assert "- older releases: transformers 4.45.2, pytorch-lightning (not installed)" in text, text
    new = "| transformers | 5.24.0 | Trainer, per-batch mean loss | " + " | ".join(["✓ pass"] * 7) + " | 44 |"
    old = "| transformers | 4.45.2 | Trainer, per-batch mean loss | " + " | ".join(["✓ pass"] * 3 + ["✗ fail"] + ["✓ pass"] * 3)
    lacking = "| transformers | 4.45.2 | Trainer(compute_loss_func=…) | " + " | ".join(["— not available"] * 7)
    assert text.index(new) < text.index(old) < text.index(lacking), text
    assert "not available in transformers 4.45.2: no compute_loss_func" in text
    assert text.count("pytorch-lightning: not checked") == 1  # checked by no run: said once
    assert "| transformers | 5.24.0 | Trainer, per-batch mean loss | 7, 2, 2 → [2, 2] [2, 1] | ✓ pass | 1, 1 |" in text
    assert "| transformers | 4.45.2 | Trainer, per-batch mean loss | 7, 2, 2 → [2, 2] [2, 1] | ✗ fail | 1, 1 |" in text
    for deviation in DEVIATIONS:  # the registry's boundaries, each with how it was measured
        assert (
            f"| {deviation.framework} | {deviation.name} | {', '.join(deviation.configurations)} | {deviation.versions} |" in text
        )
        assert deviation.measured in text
