"""The framework check that `pytest --framework NAME --recipe-model MODULE:FACTORY` runs: your model under that framework."""

from __future__ import annotations

import pytest

CHECKS = {"transformers": "check_trainer", "accelerate": "check_accelerate", "pytorch-lightning": "check_lightning"}


def test_the_framework_trains_your_model_like_one_full_batch_step_per_window(framework_under_test, pytestconfig):
    import properties.frameworks as frameworks

    name, user = framework_under_test
    if frameworks.missing(name):
        pytest.skip(frameworks.missing(name))
    examples = pytestconfig.getoption("recipe_examples")
    options = {"max_examples": examples} if examples else {}
    dtype = pytestconfig.getoption("recipe_dtype")
    try:
        getattr(frameworks, CHECKS[name])(dtype=dtype, **user, **options)
    except frameworks.KnownDeviation as deviation:
        pytest.xfail(f"{deviation.deviation.reason}\n{deviation}")
    except frameworks.FrameworkError as error:
        pytest.fail(str(error), pytrace=False)
