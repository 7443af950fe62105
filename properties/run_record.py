"""What a run's reports say about it: versions, where the suite came from, the profile and seed, the active deviations."""

from __future__ import annotations

import pytest

from properties import provenance, seeding


def active_deviations() -> list[str]:
    """The registered deviations the installed torch and frameworks have (each runs as a strict xfail where drawn)."""
    from properties import defects
    from properties.frameworks import deviations

    torch_deviations = [f"torch: {deviation.name}" for deviation in defects.DEVIATIONS if deviation.affects()]
    framework_deviations = [
        f"{deviation.framework}: {deviation.name}"
        for deviation in deviations.DEVIATIONS
        if deviation.affects(provenance.installed_version(deviation.framework))
    ]
    return torch_deviations + framework_deviations


def record(config: pytest.Config) -> dict:
    """Versions, the suite's folder and commit, and how the run is seeded."""
    return {
        "versions": provenance.versions(),
        "properties": str(provenance.package_folder()),
        "commit": provenance.suite_commit(),
        **seeding.current(config).summary(),
    }


def junit_properties(config: pytest.Config) -> dict[str, str]:
    """The record as JUnit <properties>: torch, Python, Hypothesis, the profile, the seed or 'derandomized', the commit."""
    run = record(config)
    versions = {name: version for name, version in run["versions"].items() if version is not None}
    return {
        **versions,
        "hypothesis_profile": run["profile"],
        "hypothesis_seed": run["seed"] if run["seed"] is not None else run["seeding"],
        "properties": run["properties"],
        "commit": run["commit"] or "unknown (not a git checkout)",
    }
