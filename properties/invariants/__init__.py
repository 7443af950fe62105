"""Invariants as plain checks `check_…(example)`: the tests draw examples, the meta tests break torch."""
