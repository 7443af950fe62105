"""Where the running suite comes from: the `properties` package's folder, its git commit, and the versions that matter."""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Optional

DISTRIBUTIONS = (
    "torch",
    "hypothesis",
    "pytest",
    "pytest-xdist",
    "pytest-timeout",
    "numpy",
    "transformers",
    "pytorch-lightning",
    "accelerate",
)
"""The installed distributions a result depends on (the frameworks only when installed)."""


def package_folder() -> Path:
    """The folder `properties` was imported from (an editable install elsewhere runs other code)."""
    return Path(__file__).resolve().parent


@functools.lru_cache(maxsize=None)
def suite_commit() -> Optional[str]:
    """The git commit of the checkout `properties` was imported from, '-dirty' when it has changes; None outside one."""
    root = package_folder().parent
    if not (root / ".git").exists():
        return None
    try:
        described = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=40"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (described.stdout.strip() or None) if described.returncode == 0 else None


def installed_version(distribution: str) -> Optional[str]:
    """The installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, Optional[str]]:
    """Python's version and each of DISTRIBUTIONS' (None: not installed)."""
    return {"python": platform.python_version(), **{name: installed_version(name) for name in DISTRIBUTIONS}}


def origin() -> str:
    """One line: where `properties` was imported from, and at which commit."""
    commit = suite_commit()
    return f"properties from {package_folder()}" + (f" at {commit}" if commit else " (not a git checkout)")
