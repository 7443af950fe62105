"""The public API: importing the package stays cheap, every documented name resolves, and the README's example runs."""

import re
import runpy
import subprocess
import sys
from pathlib import Path

import properties

ROOT = Path(__file__).resolve().parent.parent


def test_importing_the_package_imports_neither_torch_nor_hypothesis():
    code = "import sys, properties; print(sorted({'torch', 'hypothesis'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout


def test_every_public_name_resolves_and_nothing_else_is_advertised():
    for name in properties.__all__:
        assert getattr(properties, name) is not None, name
    assert set(dir(properties)) == set(properties.__all__)


def test_the_readme_example_of_a_property_of_your_own_runs(tmp_path):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Write your own property", 1)[1]
    source = tmp_path / "readme_property.py"
    source.write_text(re.search(r"```python\n(.*?)```", section, re.S).group(1), encoding="utf-8")
    module = runpy.run_path(str(source))
    module["test_gelu_mlps_accumulate_to_the_full_batch_gradient"]()
