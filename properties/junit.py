"""pytest plugin: with --junitxml, each <testsuite> gets <properties> saying what ran (versions, profile, seed, commit).

The properties are added on the process that writes the XML (pytest-xdist's controller), to the
object the `record_testsuite_property` fixture hands out, which a fixture on a worker cannot reach.
A failure's reproduce command is part of its text (properties.seeding), so <failure> holds it.
"""

from __future__ import annotations

import pytest


def junit_writer(config: pytest.Config):
    """The plugin that writes --junitxml in this process, or None."""
    for plugin in config.pluginmanager.get_plugins():
        if callable(getattr(plugin, "add_global_property", None)) and hasattr(plugin, "logfile"):
            return plugin
    return None


def pytest_sessionstart(session: pytest.Session) -> None:
    """Add the run's record to the JUnit XML's testsuite properties."""
    writer = None if hasattr(session.config, "workerinput") else junit_writer(session.config)
    if writer is None:
        return
    from properties.run_record import junit_properties

    for name, value in junit_properties(session.config).items():
        writer.add_global_property(name, value)
