"""Tiny Hugging Face causal LMs built from config (no download, no dropout): the real models the framework checks run."""

from __future__ import annotations

from dataclasses import dataclass

VOCAB = 16
POSITIONS = 8
EDGE_SEED = 0


@dataclass(frozen=True)
class TinyGPT2:
    """GPT2LMHeadModel(GPT2Config(vocab 16, 8 positions, width 8, 1 layer, 2 heads, dropout 0)); with mean_loss, a
    subclass that declares accepts_loss_kwargs = False (its loss the batch's mean over its own tokens)."""

    layers: int = 1
    mean_loss: bool = False

    def __call__(self):
        from transformers import GPT2Config, GPT2LMHeadModel

        if self.mean_loss:
            GPT2LMHeadModel = type("GPT2MeanLoss", (GPT2LMHeadModel,), {"accepts_loss_kwargs": False})  # noqa: N806

        config = GPT2Config(
            vocab_size=VOCAB, n_positions=POSITIONS, n_embd=8, n_layer=self.layers, n_head=2, bos_token_id=1, eos_token_id=1,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        )  # fmt: skip
        return GPT2LMHeadModel(config)

    def __repr__(self) -> str:
        name = "GPT2LMHeadModel" + (" with accepts_loss_kwargs = False" if self.mean_loss else "")
        return f"{name}(tiny GPT2Config, {self.layers} layer{'s' if self.layers != 1 else ''})"


@dataclass(frozen=True)
class TinyLlama:
    """LlamaForCausalLM(LlamaConfig(vocab 16, 8 positions, width 8, 1 layer, 2 heads, 1 key-value head))."""

    layers: int = 1

    def __call__(self):
        from transformers import LlamaConfig, LlamaForCausalLM

        config = LlamaConfig(
            vocab_size=VOCAB, hidden_size=8, intermediate_size=16, num_hidden_layers=self.layers, num_attention_heads=2,
            num_key_value_heads=1, max_position_embeddings=POSITIONS, bos_token_id=1, eos_token_id=1, pad_token_id=0,
        )  # fmt: skip
        return LlamaForCausalLM(config)

    def __repr__(self) -> str:
        return f"LlamaForCausalLM(tiny LlamaConfig, {self.layers} layer{'s' if self.layers != 1 else ''})"


def causal_lm_data():
    """Right-padded sequences of 2 … 6 tokens with labels = input_ids, −100 on padding (causal_lm_sequences)."""
    from properties.recipes.tokens import causal_lm_sequences

    return causal_lm_sequences(vocab=VOCAB, max_length=6)


def causal_lm_edge_data(lengths: tuple[int, ...]):
    """The measured edge set-ups' dataset: sequences of these lengths, labels = input_ids with −100 on padding."""
    from properties.recipes.losses import IGNORE_INDEX
    from properties.recipes.tokens import PAD, causal_lm_batch

    return causal_lm_batch(tuple(lengths), VOCAB, PAD, EDGE_SEED, IGNORE_INDEX, attention_mask=False)
