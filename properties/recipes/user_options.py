"""check_recipe(model=, loss=, data=): each a value or a strategy, checked as Hypothesis checks its arguments."""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.strategies import SearchStrategy

from properties.recipes import batches
from properties.recipes.losses import MSE, RecipeLoss, as_recipe_loss
from properties.recipes.user_case import check_dataset, check_factory
from properties.strategies import as_strategy


def check_user_options(options) -> None:
    """InvalidArgument for a model without data (or data without a model), and for any plain value that is nonsense."""
    if options.model is not None and options.data is None:
        raise InvalidArgument(
            "model= needs data=: the suite's data fits only the suite's own models; pass a dataset (x, y) "
            "or a strategy of them (properties.recipes.token_sequences() for token models)"
        )
    if options.data is not None and options.model is None:
        raise InvalidArgument("data= needs model=: a factory building the model that takes these inputs")
    if options.output is not None and options.model is None:
        raise InvalidArgument("output= reads your model's output: it needs model= (the suite's models return tensors)")
    if options.model is not None and not isinstance(options.model, SearchStrategy):
        check_factory(options.model)
    if options.loss is not None and not isinstance(options.loss, SearchStrategy):
        as_recipe_loss(options.loss)
    if options.data is not None and not isinstance(options.data, SearchStrategy):
        check_dataset(options.data)
    if options.output is not None and not callable(options.output):
        raise InvalidArgument(
            f"output={options.output!r} must be a function from what the model returns to the loss's input "
            "(e.g. output=lambda out: out[0]); by default a tensor is taken as it is and a model output's .logits is read"
        )


def factories(options) -> SearchStrategy:
    """The model factory drawn, checked as it is drawn."""
    return as_strategy(options.model).map(lambda factory: (check_factory(factory), factory)[1])


def losses(options) -> SearchStrategy[RecipeLoss]:
    """The loss drawn (MSE when none is given), as a RecipeLoss."""
    return st.just(MSE) if options.loss is None else as_strategy(options.loss).map(as_recipe_loss)


def datasets(options) -> SearchStrategy:
    """The dataset (x, y) drawn, checked as it is drawn."""
    return as_strategy(options.data).map(check_dataset)


def user_cases(options) -> SearchStrategy:
    """(UserCase, loss): the factory, the loss, a dataset, its N rows cut into micro-batches, a seed for the model."""
    from properties.recipes.examples import DTYPES
    from properties.recipes.user_case import UserCase, check_forward, splits
    from properties.strategies import seeds

    @st.composite
    def draw(draw_):
        factory, loss, data = draw_(factories(options)), draw_(losses(options)), draw_(datasets(options))
        sizes = draw_(splits(batches.rows(data[0]), options.max_micro_batches))
        case = UserCase(factory, data, sizes, loss, DTYPES[options.dtype], draw_(seeds()), output=options.output)
        check_forward(case)
        return case, loss

    return draw()
