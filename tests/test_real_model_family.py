"""Hugging Face models from drawn configs (GPT-2, Llama, BERT): their own loss accumulated over micro-batches is the full batch's."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from properties import profiles
from properties.frameworks import missing
from properties.recipes.examples import recipe_cases
from properties.recipes.options import RecipeOptions
from properties.recipes.search import check_example
from properties.recipes.tokens import causal_lm_sequences

if missing("transformers"):
    pytest.skip(f"the real models need transformers (the frameworks extra): {missing('transformers')}", allow_module_level=True)


from properties.frameworks.hf_models import hf_models, hugging_face_accumulation  # noqa: E402


def real_model_examples(draw, model):
    """A recipe example on `model`: padded sequences over its vocabulary (an attention mask or not), k, SGD or Adam."""
    data = causal_lm_sequences(vocab=model.vocab, max_rows=5, max_length=6, attention_mask=draw(st.booleans(), label="mask"))
    options = RecipeOptions(model=model, loss=model.loss(), data=data, optimizers=("SGD", "Adam"), max_epochs=1, max_k=3)
    return draw(recipe_cases(options), label="example")


@settings(max_examples=profiles.examples(0.4), deadline=None)
@given(data=st.data())
def test_a_hugging_face_model_s_own_loss_accumulated_over_micro_batches_steps_like_the_full_batch(data):
    model = data.draw(hf_models(), label="model")
    check_example(hugging_face_accumulation, real_model_examples(data.draw, model))
