"""Negative controls: the real-model property rejects Hugging Face loops that weigh micro-batches wrongly, on every family."""

import pytest

from properties.frameworks import missing
from properties.recipes import RecipeError, check_recipe
from properties.recipes.tokens import causal_lm_sequences

pytestmark = pytest.mark.meta
if missing("transformers"):
    pytest.skip(f"the real models need transformers (the frameworks extra): {missing('transformers')}", allow_module_level=True)


from properties.frameworks.hf_models import FAMILIES, HFModel  # noqa: E402


def means_over_k(model, optimizer, micro_batches, loss_fn, accumulation_steps):
    """Wrong: each micro-batch's own mean loss ÷ k, the model's loss as Hugging Face computes it without num_items_in_batch."""
    for start in range(0, len(micro_batches), accumulation_steps):
        for x, y in micro_batches[start : start + accumulation_steps]:
            (model(input_ids=x, labels=y).loss / accumulation_steps).backward()
        optimizer.step()
        optimizer.zero_grad()


def weights_by_rows(model, optimizer, micro_batches, loss_fn, accumulation_steps):
    """Wrong on padded tokens: each micro-batch's mean weighted by its rows mⱼ/n, not its counted tokens."""
    for start in range(0, len(micro_batches), accumulation_steps):
        window = micro_batches[start : start + accumulation_steps]
        rows = sum(len(x) for x, _ in window)
        for x, y in window:
            (model(input_ids=x, labels=y).loss * (len(x) / rows)).backward()
        optimizer.step()
        optimizer.zero_grad()


CONTROLS = [(means_over_k, "divided by k", family) for family in FAMILIES] + [(weights_by_rows, "weighted by its rows", "gpt2")]
"""÷ k on every family; the rows weighting on one, unshrunk (any example it fails on tells rows from counted tokens,
while ÷ k is told from rows weighting only on the short window the shrinker finds)."""


@pytest.mark.parametrize("loop, cause, family", CONTROLS, ids=lambda value: getattr(value, "__name__", value))
def test_the_real_model_property_rejects_a_loop_that_weighs_micro_batches_wrongly(family, loop, cause):
    model = HFModel(family)
    with pytest.raises(RecipeError, match="each step uses the mean-loss gradient") as failure:
        data = causal_lm_sequences(vocab=model.vocab)
        check_recipe(loop, model=model, loss=model.loss(), data=data, max_examples=8, shrink=loop is not weights_by_rows)
    assert cause in str(failure.value), str(failure.value)
