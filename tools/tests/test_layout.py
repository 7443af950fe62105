"""The shipped package is the library alone: the tooling and its tests stay in the clone."""

import ast
from pathlib import Path

import tomllib
from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_packages_the_library_and_no_tooling():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"]["find"]
    packages = find_packages(where=str(ROOT), include=config["include"], exclude=config.get("exclude", ()))
    assert "properties" in packages
    assert not [p for p in packages if p.split(".")[0] != "properties" or ".tools" in p or ".tests" in p], packages


def test_no_library_module_imports_the_tooling():
    offenders = []
    for path in sorted((ROOT / "properties").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n == "tools" or n.startswith("tools.")]
    assert not offenders, offenders


def test_the_user_s_pytest_collects_the_properties_and_controls_only():
    testpaths = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"]["testpaths"]
    assert testpaths == ["tests"] and not (ROOT / "tests" / "tools").exists()
