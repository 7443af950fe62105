"""The meta marker and tests/meta name the same tests: `-m "not meta"` selects what `--ignore=tests/meta` does."""

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.meta
TESTS = Path(__file__).resolve().parents[1]


def meta_marks(node: ast.AST) -> list[ast.Attribute]:
    """Every `….mark.meta` under node."""
    return [
        n
        for n in ast.walk(node)
        if isinstance(n, ast.Attribute) and n.attr == "meta" and isinstance(n.value, ast.Attribute) and n.value.attr == "mark"
    ]


def marks_the_whole_module(tree: ast.Module) -> bool:
    """Whether a module-level `pytestmark = …` carries the meta mark."""
    return any(
        isinstance(statement, ast.Assign)
        and any(isinstance(target, ast.Name) and target.id == "pytestmark" for target in statement.targets)
        and meta_marks(statement.value)
        for statement in tree.body
    )


def test_every_module_under_tests_meta_and_no_other_carries_the_meta_marker():
    unmarked, marked_elsewhere = [], []
    for path in sorted(TESTS.rglob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        name = str(path.relative_to(TESTS.parent))
        if path.parent.name == "meta" and not marks_the_whole_module(tree):
            unmarked.append(name)
        if path.parent.name != "meta" and meta_marks(tree):
            marked_elsewhere.append(name)
    assert not unmarked, f"modules under tests/meta without `pytestmark = pytest.mark.meta`: {unmarked}"
    assert not marked_elsewhere, f"meta marks outside tests/meta (move those tests there): {marked_elsewhere}"
