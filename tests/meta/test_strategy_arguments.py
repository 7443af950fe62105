"""Strategies reject nonsense arguments with InvalidArgument naming the argument, as Hypothesis' own strategies do."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from properties.optimizers import adam_specs, optimizer_specs
from properties.strategies import batch_splits, model_specs, step_counts

pytestmark = pytest.mark.meta

BAD_CALLS = [
    ("min_k", lambda: batch_splits(min_k=0)),
    ("max_k", lambda: batch_splits(min_k=3, max_k=2)),
    ("max_size", lambda: batch_splits(max_size=0)),
    ("min_k", lambda: batch_splits(min_k=1.5)),
    ("kinds", lambda: model_specs(["linear", "rnn"])),
    ("layouts", lambda: model_specs(layouts=["strided"])),
    ("large_features", lambda: model_specs(large_features=0)),
    ("large_size", lambda: batch_splits(large_size=0)),
    ("kinds", lambda: model_specs("linear")),
    ("kinds", lambda: model_specs([])),
    ("activations", lambda: model_specs(activations=["relu6"])),
    ("max_features", lambda: model_specs(max_features=0)),
    ("min_value", lambda: step_counts(min_value=0)),
    ("max_value", lambda: step_counts(min_value=3, max_value=2)),
    ("names", lambda: optimizer_specs(["SGD", "Adagrad"])),
    ("names", lambda: optimizer_specs([])),
    ("name", lambda: adam_specs("Adamax")),
]


BAD_DRAWS = [
    ("max_k", lambda: batch_splits(min_k=st.just(3), max_k=st.just(2))),
    ("min_k", lambda: batch_splits(min_k=st.just(0))),
    ("max_size", lambda: batch_splits(max_size=st.just(-1))),
    ("max_value", lambda: step_counts(min_value=st.just(4), max_value=st.just(2))),
    ("min_value", lambda: step_counts(min_value=st.just("1"))),
]


@pytest.mark.parametrize("argument, call", BAD_DRAWS, ids=[f"{a}-{i}" for i, (a, _) in enumerate(BAD_DRAWS)])
def test_a_strategy_argument_that_draws_nonsense_raises_invalid_argument_naming_it(argument, call):
    @given(call())
    def draws(value):
        pass

    with pytest.raises(InvalidArgument, match=argument):
        draws()


def test_step_counts_takes_a_strategy_for_each_bound():
    @given(step_counts(min_value=st.integers(1, 2), max_value=st.just(3), large_value=st.just(9)))
    def within(count):
        assert 1 <= count <= 9

    within()


@pytest.mark.parametrize("argument, call", BAD_CALLS, ids=[f"{a}-{i}" for i, (a, _) in enumerate(BAD_CALLS)])
def test_a_strategy_given_a_nonsense_argument_raises_invalid_argument_naming_it_when_first_used(argument, call):
    strategy = call()  # lazily, as Hypothesis' own strategies: building it raises nothing
    with pytest.raises(InvalidArgument, match=argument):
        strategy.validate()

    @given(call())
    def draws(value):
        pass

    with pytest.raises(InvalidArgument, match=argument):
        draws()


def test_a_strategy_that_is_never_drawn_does_no_work():
    from properties import strategies

    probed = strategies.supported_dtypes.cache_info().currsize
    strategies.supported_dtypes.cache_clear()
    try:
        strategies.dtypes(device="a device that does not exist")  # probing it would fail
        assert strategies.supported_dtypes.cache_info().currsize == 0
    finally:
        if probed:
            strategies.supported_dtypes("cpu")
