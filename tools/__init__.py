"""The suite's own tooling: self-audit, benchmark, reliability soak, torch version matrix and their reports.

They run the library and the tests from outside, from a clone of the repository (they start
pytest on its tests/); nothing in the library imports them. Their commands keep the short names
`python -m tools.audit`, `.bench`, `.reliability` and `.matrix`.
"""
