"""Negative controls: a wrong set-up of each framework is rejected, and a registered deviation excuses nothing else.

Each control is written against the framework's own API, and fails as a plain FrameworkError
(never as a KnownDeviation) with a counterexample, the failing property and the likely cause.
"""

import pytest
from hypothesis import settings

from properties.frameworks import missing

pytestmark = [pytest.mark.meta, pytest.mark.frameworks]

EXAMPLES = max(2, settings.default.max_examples // 5)


def needs(framework: str):
    reason = missing(framework)
    return pytest.mark.skipif(reason is not None, reason=str(reason))


def rejected(configuration, shrink: bool = True):
    """The plain FrameworkError check_framework raises on `configuration` (a KnownDeviation is not a rejection)."""
    from properties.frameworks.check import FrameworkError, check_framework

    with pytest.raises(FrameworkError) as raised:
        check_framework(configuration, max_examples=EXAMPLES, shrink=shrink)
    error = raised.value
    assert type(error) is FrameworkError and error.deviation is None, f"excused as a known deviation:\n{error}"
    return error


@needs("pytorch-lightning")
def test_a_lightning_module_that_divides_its_loss_by_k_itself_is_rejected_although_lightning_s_deviation_is_registered():
    from properties.frameworks.lightning_trainer import lightning

    # under accumulate_grad_batches, whose partial-window deviation is registered: it must not excuse 1/k².
    error = rejected(lightning("DividesByK"))
    assert error.property == "gradients", str(error)
    assert "DividesByK(model)" in str(error) and "accumulate_grad_batches=2" in str(error), str(error)
    assert error.ratios == (0.25,), str(error)  # the shrunk one-batch window: Lightning's 1/k times the module's 1/k


@needs("accelerate")
def test_an_accelerate_loop_without_accumulate_is_rejected_for_stepping_every_batch():
    from properties.frameworks.accelerate_loop import accelerate, without_accumulate

    error = rejected(accelerate(without_accumulate))
    assert error.property == "steps", str(error)
    assert "outside `with accelerator.accumulate(model):`" in str(error), str(error)


@needs("accelerate")
def test_an_accelerate_loop_whose_dataloader_is_not_prepared_is_rejected_for_the_swallowed_last_step():
    from properties.frameworks.accelerate_loop import accelerate, dataloader_not_prepared

    error = rejected(accelerate(dataloader_not_prepared))
    assert error.property == "steps", str(error)
    assert "swallowed the step() that ends the epoch" in str(error), str(error)


@needs("accelerate")
def test_an_accelerate_loop_that_calls_loss_backward_inside_accumulate_is_rejected_for_summing_the_batch_means():
    from properties.frameworks.accelerate_loop import accelerate, backward_not_scaled

    error = rejected(accelerate(backward_not_scaled))
    assert error.property == "gradients", str(error)
    assert "summed with no 1/k" in str(error) or "summed with no weighting" in str(error), str(error)


@needs("transformers")
def test_a_transformers_model_that_claims_num_items_in_batch_but_returns_the_batch_mean_is_rejected():
    from properties.frameworks.transformers_trainer import ClaimsItemCount, trainer

    error = rejected(trainer(ClaimsItemCount))
    assert error.property == "gradients", str(error)
    assert "Trainer(model=ClaimsItemCount(model)" in str(error), str(error)


@needs("pytorch-lightning")
def test_with_no_deviation_registered_lightning_s_partial_window_fails_as_any_counterexample(monkeypatch):
    from properties.frameworks import check
    from properties.frameworks.lightning_trainer import CONFIGURATIONS

    monkeypatch.setattr(check, "registered", lambda *args: None)
    error = rejected(CONFIGURATIONS[0])
    assert "divided by k=2" in str(error) and "stepped exactly as the behaviour 'means ÷ k' predicts" in str(error), str(error)


@needs("transformers")
def test_a_token_model_that_averages_each_sequence_first_is_rejected_although_the_mean_loss_deviation_is_registered():
    from torch import nn

    from properties.frameworks.transformers_trainer import trainer

    class SequenceMeans(nn.Module):
        """Loss = the batch's mean over sequences of each sequence's mean token CE: rows weigh alike, not tokens."""

        accepts_loss_kwargs = False

        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, x, labels=None):
            logits = self.module(x)
            if labels is None:
                return {"logits": logits}
            per_token = nn.functional.cross_entropy(logits.transpose(1, 2), labels, reduction="none")
            counted = (labels != -100).sum(dim=1).clamp(min=1)
            return {"loss": (per_token.sum(dim=1) / counted).mean(), "logits": logits}

    error = rejected(trainer(SequenceMeans, data="tokens"))
    assert error.property == "gradients", str(error)
    assert "Trainer(model=SequenceMeans(model)" in str(error) and "counted tokens" in str(error), str(error)


@pytest.mark.deepspeed
@needs("deepspeed")
def test_a_deepspeed_loop_that_divides_its_loss_by_k_before_engine_backward_is_rejected_although_deepspeed_s_deviation_is_registered():
    from properties.frameworks.deepspeed_engine import deepspeed, divides_by_k_again

    # under ZeRO stage 0, whose deviation (each micro-batch's mean ÷ k, windows across epochs) is registered: not 1/k².
    error = rejected(deepspeed(divides_by_k_again))
    assert error.property in ("steps", "gradients") and "each step uses the mean-loss gradient" in str(error), str(error)
    assert "divides_by_k_again(deepspeed.initialize(" in str(error) and "counterexample (shrunk)" in str(error), str(error)
    assert "engine.backward(loss) already divides the loss by gradient_accumulation_steps" in str(error), str(error)
    assert error.ratios and all(r == pytest.approx(1 / error.example.k, rel=1e-6) for r in error.ratios), str(error)
