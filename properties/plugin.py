"""The pytest plugin this package installs (entry point `pytest11`): options the suite adds to pytest."""
