"""The tutorial's two loops (shared/seeds): reproduced against their closed forms, and where the second one goes wrong."""

from hypothesis import given

from properties.invariants import tutorial
from properties.meta import assert_rejects


@given(seed=tutorial.SEEDS, dtype=tutorial.FIRST_LOOP_DTYPES)
def test_the_first_loop_follows_the_closed_form_per_sample_sgd_trajectory(seed, dtype):
    tutorial.check_first_loop_follows_closed_form(seed, dtype)


@given(seed=tutorial.SEEDS)
def test_the_second_loop_follows_the_closed_form_of_what_it_computes(seed):
    tutorial.check_second_loop_follows_its_closed_form(seed)


@given(seed=tutorial.SEEDS)
def test_on_the_tutorial_data_each_step_of_the_second_loop_is_twice_the_window_mean_step(seed):
    tutorial.check_tutorial_data_step_is_k_times_the_window_mean_step(seed)


@given(seed=tutorial.SEEDS)
def test_on_the_tutorial_data_the_fifth_sample_never_changes_the_parameters(seed):
    tutorial.check_tutorial_data_fifth_row_is_never_used(seed)


@given(example=tutorial.COMPLETE_WINDOWS.map(lambda e: {**e, "accumulation_steps": 1}))
def test_with_accumulation_steps_1_the_second_loop_is_sgd_on_each_micro_batch_mean(example):
    tutorial.check_window_example(example)


def test_the_second_loop_update_is_k_times_the_window_mean_update_on_two_one_row_micro_batches():
    example, message = assert_rejects(tutorial.check_window_example, example=tutorial.COMPLETE_WINDOWS, shrink=True)
    assert example["example"]["case"].sizes == (1, 1) and example["example"]["accumulation_steps"] == 2, example
    assert "actual ≈ 2 × expected" in message


def test_the_second_loop_never_steps_a_short_last_window():
    example, message = assert_rejects(tutorial.check_window_example, example=tutorial.ANY_WINDOWS, shrink=True)
    assert example["example"]["case"].sizes == (1,) and example["example"]["accumulation_steps"] == 2, example
    assert "(actual 0," in message and "windows of [1] micro-batches" in message
