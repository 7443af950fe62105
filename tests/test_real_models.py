"""Hugging Face causal LMs as they are, in check_recipe and pytest --recipe: right loops pass, wrong ones fail in counted tokens."""

import os
import re
import runpy
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from hypothesis.errors import InvalidArgument

from properties import causal_lm_cross_entropy, causal_lm_sequences, check_recipe, profiles, token_sequences
from properties.frameworks import missing
from properties.recipes import RecipeError

if missing("transformers"):
    pytest.skip(f"the real models need transformers (the frameworks extra): {missing('transformers')}", allow_module_level=True)
import transformers  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NO_DROPOUT = dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
TOKENS = dict(bos_token_id=1, eos_token_id=1)
EXAMPLES = 15
"""A wrong loop's search: derandomized, it finds and shrinks the failure within these, on every profile."""
PASSES = profiles.examples(0.4, at_least=5)
"""A right loop's (or a framework's) search: a share of the profile's examples (6 under dev, 24 under ci, 120 thorough)."""


def tiny_gpt2():
    """GPT-2 from config: 1 layer, width 8, vocab 16, no dropout."""
    return transformers.GPT2LMHeadModel(
        transformers.GPT2Config(vocab_size=16, n_positions=8, n_embd=8, n_layer=1, n_head=2, **NO_DROPOUT, **TOKENS)
    )


def tiny_llama():
    """Llama from config: 1 layer, width 8, grouped-query attention, vocab 16."""
    config = transformers.LlamaConfig(
        vocab_size=16, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
        max_position_embeddings=8, pad_token_id=0, **TOKENS,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(config)


def hf_loop(model, optimizer, micro_batches, loss_fn, accumulation_steps):
    """Right, the Hugging Face way: Σ CE ÷ the window's counted tokens (num_items_in_batch)."""
    for start in range(0, len(micro_batches), accumulation_steps):
        window = micro_batches[start : start + accumulation_steps]
        n = sum(loss_fn.count(y) for _, y in window)
        for x, y in window:
            inputs = x if isinstance(x, dict) else {"input_ids": x}
            model(**inputs, labels=y, num_items_in_batch=n).loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def mean_over_k(model, optimizer, micro_batches, loss_fn, accumulation_steps):
    """Wrong: each micro-batch's mean loss ÷ k."""
    for start in range(0, len(micro_batches), accumulation_steps):
        for x, y in micro_batches[start : start + accumulation_steps]:
            (model(input_ids=x, labels=y).loss / accumulation_steps).backward()
        optimizer.step()
        optimizer.zero_grad()


def through_submodules(model, optimizer, micro_batches, loss_fn, accumulation_steps):
    """Right, calling the body and the head by keyword, with the handed (shifted) loss weighted by counted tokens."""
    for start in range(0, len(micro_batches), accumulation_steps):
        window = micro_batches[start : start + accumulation_steps]
        n = sum(loss_fn.count(y) for _, y in window)
        for x, y in window:
            hidden = model.transformer(input_ids=x).last_hidden_state
            (loss_fn(model.lm_head(hidden), y) * (loss_fn.count(y) / n)).backward()
        optimizer.step()
        optimizer.zero_grad()


@pytest.mark.commands
def test_the_readme_s_real_model_example_passes_for_the_loop_written_the_hugging_face_way(tmp_path):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Check it on your own model", 1)[1]
    source = tmp_path / "readme_real_model.py"
    source.write_text(re.search(r"```python\n(.*?)```", section, re.S).group(1), encoding="utf-8")
    runpy.run_path(str(source))["test_my_loop_on_my_model"]()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_gpt2_loop_that_divides_each_mean_by_k_fails_with_the_cause_in_counted_tokens(dtype):
    with pytest.raises(RecipeError) as failure:
        check_recipe(
            mean_over_k,
            model=tiny_gpt2,
            loss=causal_lm_cross_entropy(),
            data=causal_lm_sequences(),
            max_examples=EXAMPLES,
            dtype=dtype,
        )
    message = str(failure.value)
    assert "divided by k" in message and "cⱼ / c_window" in message and "counted item" in message, message
    assert "mⱼ / n" not in message, message


def test_a_float64_gpt2_whose_loss_runs_in_float32_is_bounded_at_float32_and_says_so():
    with pytest.raises(RecipeError) as failure:
        check_recipe(
            mean_over_k, model=tiny_gpt2, loss=causal_lm_cross_entropy(), data=causal_lm_sequences(), max_examples=EXAMPLES
        )
    assert "the run computed in float32" in str(failure.value) and "although the model is float64" in str(failure.value)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_llama_fed_input_ids_and_an_attention_mask_as_keywords_passes(dtype):
    data = causal_lm_sequences(attention_mask=True)
    check_recipe(hf_loop, model=tiny_llama, loss=causal_lm_cross_entropy(), data=data, max_examples=PASSES, dtype=dtype)


def test_rows_are_counted_from_keyword_calls_of_submodules():
    check_recipe(
        through_submodules, model=tiny_gpt2, loss=causal_lm_cross_entropy(), data=causal_lm_sequences(), max_examples=PASSES
    )


def test_data_whose_rows_count_no_shifted_token_never_gives_a_window_with_none():
    data = token_sequences(vocab=16)  # rows of one token count no shifted label
    check_recipe(hf_loop, model=tiny_gpt2, loss=causal_lm_cross_entropy(), data=data, max_examples=PASSES)


class Pair(torch.nn.Module):
    """A model that returns (logits, hidden): neither a tensor nor an output with .logits."""

    def __init__(self):
        super().__init__()
        self.inner = tiny_gpt2()

    def forward(self, x):
        out = self.inner(input_ids=x)
        return (out.logits, out.logits.detach())


def test_an_output_the_loss_cannot_read_is_refused_up_front_and_output_reads_it():
    options = dict(loss=causal_lm_cross_entropy(), data=causal_lm_sequences(), max_examples=3)
    with pytest.raises(InvalidArgument, match="pass output="):
        check_recipe(hf_loop, model=Pair, **options)
    check_recipe(hf_like_pair, model=Pair, output=lambda out: out[0], **options)


def hf_like_pair(model, optimizer, micro_batches, loss_fn, accumulation_steps):
    """Right, with the handed loss on the (logits, hidden) pair."""
    for start in range(0, len(micro_batches), accumulation_steps):
        window = micro_batches[start : start + accumulation_steps]
        n = sum(loss_fn.count(y) for _, y in window)
        for x, y in window:
            (loss_fn(model(x), y) * (loss_fn.count(y) / n)).backward()
        optimizer.step()
        optimizer.zero_grad()


def test_a_model_with_dropout_on_is_refused_up_front_saying_so():
    def with_dropout():
        return transformers.GPT2LMHeadModel(
            transformers.GPT2Config(vocab_size=16, n_positions=8, n_embd=8, n_layer=1, n_head=2, **TOKENS)
        )

    with pytest.raises(InvalidArgument, match="dropout"):
        check_recipe(hf_loop, model=with_dropout, loss=causal_lm_cross_entropy(), data=causal_lm_sequences(), max_examples=3)


MODULE = """
from transformers import GPT2Config, GPT2LMHeadModel


def gpt2():
    config = GPT2Config(vocab_size=16, n_positions=8, n_embd=8, n_layer=1, n_head=2, resid_pdrop=0.0, embd_pdrop=0.0,
                        attn_pdrop=0.0, bos_token_id=1, eos_token_id=1)
    return GPT2LMHeadModel(config)


def hf_loop(model, optimizer, micro_batches, loss_fn, accumulation_steps):
    for start in range(0, len(micro_batches), accumulation_steps):
        window = micro_batches[start : start + accumulation_steps]
        n = sum(int((y[..., 1:] != -100).sum()) for _, y in window)
        for x, y in window:
            model(input_ids=x, labels=y, num_items_in_batch=n).loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def mean_over_k(model, optimizer, micro_batches, loss_fn, accumulation_steps):
    for start in range(0, len(micro_batches), accumulation_steps):
        for x, y in micro_batches[start : start + accumulation_steps]:
            (model(input_ids=x, labels=y).loss / accumulation_steps).backward()
        optimizer.step()
        optimizer.zero_grad()
"""


@pytest.mark.commands
def test_pytest_recipe_with_a_model_loss_and_data_gives_the_same_verdicts_from_the_command_line(tmp_path):
    (tmp_path / "mymodel.py").write_text(textwrap.dedent(MODULE), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "HYPOTHESIS_PROFILE"}
    options = ["--recipe-model", "mymodel:gpt2", "--recipe-loss", "properties:causal_lm_cross_entropy"]
    options += ["--recipe-data", "properties:causal_lm_sequences", "--recipe-examples", "5", "-p", "no:cacheprovider", "-q"]
    options += ["-k", "mean_loss_gradient"]  # the property ÷ k breaks; the others run the same way
    runs = {
        loop: subprocess.Popen(
            [sys.executable, "-m", "pytest", "--recipe", f"mymodel:{loop}", *options],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for loop in ("hf_loop", "mean_over_k")
    }
    finished = {loop: run.communicate(timeout=600) for loop, run in runs.items()}
    right, wrong = (subprocess.CompletedProcess(run.args, run.returncode, *finished[loop]) for loop, run in runs.items())
    assert right.returncode == 0, right.stdout[-3000:] + right.stderr[-2000:]
    assert wrong.returncode == 1, wrong.stdout[-3000:] + wrong.stderr[-2000:]
    assert "FAILED" in wrong.stdout and "cⱼ / c_window" in wrong.stdout


def test_the_trainer_runs_an_unmodified_llama_with_its_own_loss_and_steps_like_one_full_batch_step_per_window():
    from properties.frameworks import check_trainer

    result = check_trainer(model=tiny_llama, max_examples=PASSES)
    assert result.failure is None and result.deviation is None and result.examples >= PASSES


def test_the_trainer_on_an_unmodified_gpt2_miscounts_num_items_in_batch_as_registered():
    from properties.frameworks import KnownDeviation, check_trainer
    from properties.frameworks.deviations import TRANSFORMERS_UNSHIFTED_COUNT

    if not TRANSFORMERS_UNSHIFTED_COUNT.affects(transformers.__version__):
        pytest.skip(f"transformers {transformers.__version__}: {TRANSFORMERS_UNSHIFTED_COUNT.name} is not registered for it")
    with pytest.raises(KnownDeviation) as deviation:
        check_trainer(model=tiny_gpt2, max_examples=PASSES)
    assert deviation.value.deviation is TRANSFORMERS_UNSHIFTED_COUNT and "unshifted" in str(deviation.value)


def test_check_trainer_refuses_data_or_a_loss_without_a_model():
    from properties.frameworks import check_trainer

    with pytest.raises(InvalidArgument, match="pass model="):
        check_trainer(data=causal_lm_sequences())


@pytest.mark.parametrize("framework", ["accelerate", "pytorch-lightning"])
def test_accelerate_and_lightning_run_an_unmodified_llama_and_show_their_registered_per_batch_mean_deviation(framework):
    from properties.frameworks import KnownDeviation, check_accelerate, check_lightning, missing

    if missing(framework):
        pytest.skip(missing(framework))
    check = check_accelerate if framework == "accelerate" else check_lightning
    with pytest.raises(KnownDeviation) as deviation:
        check(model=tiny_llama, max_examples=PASSES)
    assert deviation.value.deviation.framework == framework and deviation.value.deviation.behaviour == "means ÷ k"


@pytest.mark.commands
def test_pytest_framework_checks_your_model_under_the_framework_from_the_command_line(tmp_path):
    (tmp_path / "mymodel.py").write_text(textwrap.dedent(MODULE), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "HYPOTHESIS_PROFILE"}
    command = [sys.executable, "-m", "pytest", "--framework", "transformers", "--recipe-model", "mymodel:gpt2"]
    done = subprocess.run([*command, "--recipe-examples", "5", "-p", "no:cacheprovider", "-rx"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0 and "1 xfailed" in done.stdout, done.stdout[-3000:] + done.stderr[-2000:]
    assert "num_items_in_batch counts unshifted labels" in done.stdout
