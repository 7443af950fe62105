"""`pytest --recipe MODULE:FUNCTION`: runs only the recipe properties, exits 1 on a wrong loop, finds a user's module."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from properties.plugin import load_recipe

ROOT = Path(__file__).resolve().parent.parent
USER_MODULE = '''
"""A training loop that gates its own CI: one step per window of k micro-batches."""


def my_loop(model, optimizer, micro_batches, loss_fn, accumulation_steps):
    for start in range(0, len(micro_batches), accumulation_steps):
        window = micro_batches[start : start + accumulation_steps]
        rows = sum(len(x) for x, _ in window)
        for x, y in window:
            (loss_fn(model(x), y) * (len(x) / rows)).backward()
        optimizer.step()
        optimizer.zero_grad()
'''


def run(command: list, cwd: Path) -> subprocess.CompletedProcess:
    """Run a command without this session's Hypothesis profile, capturing its output."""
    env = {k: v for k, v in os.environ.items() if k != "HYPOTHESIS_PROFILE"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.commands
def test_pytest_recipe_exits_1_on_a_wrong_loop_and_says_which_property_broke_and_why():
    done = run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            "--recipe-examples",
            "5",
            "--recipe",
            "properties.recipes.bundled:steps_every_micro_batch",
        ],
        ROOT,
    )
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "FAILED properties/recipe_tests.py::test_one_optimizer_step_comes_at_the_end_of_each_window" in done.stdout
    assert "likely cause: stepped every micro-batch" in done.stdout
    assert "test_zero_grad" not in done.stdout and "1 failed, 4 passed" in done.stdout.splitlines()[-1]


@pytest.mark.commands
def test_a_users_module_in_its_own_directory_is_checked_by_the_pytest_command(tmp_path):
    (tmp_path / "mymodule.py").write_text(textwrap.dedent(USER_MODULE))
    script = shutil.which("pytest", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "pytest"]
    done = run(
        command
        + ["-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "--recipe-examples", "5", "--recipe", "mymodule:my_loop"],
        tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "8 passed, 2 skipped" in done.stdout.splitlines()[-1]
    assert "SKIPPED" in done.stdout and "only with --recipe-scheduler" in done.stdout, "a skip must say why"


RAISING_MODULE = """
def breaks(model, optimizer, micro_batches, loss_fn, accumulation_steps):
    raise RuntimeError("out of memory, say")
"""


@pytest.mark.commands
def test_a_recipe_that_raises_fails_once_with_its_exception_and_every_other_property_says_why_it_skipped(tmp_path):
    (tmp_path / "raising.py").write_text(textwrap.dedent(RAISING_MODULE))
    done = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path)]
        + ["--recipe-examples", "3", "--recipe", "raising:breaks"],
        tmp_path,
    )
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 failed" in done.stdout.splitlines()[-1], done.stdout[-2000:]
    assert "::test_the_recipe_runs_without_raising - Failed" in done.stdout
    assert "the recipe raised on every example" in done.stdout
    assert "ExceptionGroup" not in done.stdout and "out of memory, say" in done.stdout


def test_importing_the_plugin_and_the_recipes_package_loads_neither_torch_nor_hypothesis():
    code = "import sys, properties.plugin, properties.recipes; print(sorted({'torch', 'hypothesis'} & set(sys.modules)))"
    done = run([sys.executable, "-c", code], ROOT)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


@pytest.mark.parametrize(
    "spec, words",
    [
        ("no_such_module_for_recipes:loop", "cannot import 'no_such_module_for_recipes'"),
        ("properties.recipes.bundled:no_such_loop", "has no attribute 'no_such_loop'"),
        ("properties.recipes.bundled", "expected MODULE:FUNCTION"),
    ],
)
def test_a_recipe_that_cannot_be_found_is_a_usage_error_that_says_why(spec, words):
    with pytest.raises(pytest.UsageError, match=words):
        load_recipe(spec)


def test_a_recipe_can_be_named_by_the_path_of_its_file(tmp_path):
    path = tmp_path / "loops.py"
    path.write_text(textwrap.dedent(USER_MODULE))
    assert load_recipe(f"{path}:my_loop").__name__ == "my_loop"
