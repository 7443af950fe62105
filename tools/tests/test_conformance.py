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
