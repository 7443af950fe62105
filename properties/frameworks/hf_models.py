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


FAMILIES = ("gpt2", "llama", "bert")


@dataclass(frozen=True)
class HFModel:
    """A Hugging Face model built from config, dropout 0: a GPT-2 or Llama causal LM, or a BERT masked-LM encoder."""

    family: str
    layers: int = 1
    width: int = 8
    heads: int = 2
    vocab: int = VOCAB

    def __call__(self):
        import transformers

        common = dict(vocab_size=self.vocab, bos_token_id=1, eos_token_id=1, pad_token_id=0)
        if self.family == "gpt2":
            config = transformers.GPT2Config(
                n_positions=POSITIONS, n_embd=self.width, n_layer=self.layers, n_head=self.heads,
                resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **common,
            )  # fmt: skip
            return transformers.GPT2LMHeadModel(config)
        if self.family == "llama":
            config = transformers.LlamaConfig(
                hidden_size=self.width, intermediate_size=2 * self.width, num_hidden_layers=self.layers,
                num_attention_heads=self.heads, num_key_value_heads=1, max_position_embeddings=POSITIONS, **common,
            )  # fmt: skip
            return transformers.LlamaForCausalLM(config)
        config = transformers.BertConfig(
            hidden_size=self.width, intermediate_size=2 * self.width, num_hidden_layers=self.layers,
            num_attention_heads=self.heads, max_position_embeddings=POSITIONS, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0, **common,
        )  # fmt: skip
        return transformers.BertForMaskedLM(config)

    @property
    def causal(self) -> bool:
        """Whether the model is a causal LM (its loss shifts the labels) rather than a masked-LM encoder."""
        return self.family != "bert"

    def loss(self):
        """The RecipeLoss its own loss computes: the shifted causal-LM CE, or the unshifted token CE over labels ≠ -100."""
        from properties.recipes.losses import causal_lm_cross_entropy, token_cross_entropy

        return causal_lm_cross_entropy() if self.causal else token_cross_entropy()

    def __repr__(self) -> str:
        return f"{self.family}(layers={self.layers}, width={self.width}, heads={self.heads}, vocab={self.vocab})"


def hf_models(families=FAMILIES, max_layers: int = 2):
    """GPT-2, Llama and BERT-style models from drawn configs: 1 … max_layers layers, width 4 or 8, 1 or 2 heads, vocab 4 … 32."""
    from hypothesis import strategies as st

    return st.builds(
        HFModel,
        family=st.sampled_from(tuple(families)),
        layers=st.integers(1, max_layers),
        width=st.sampled_from((4, 8)),
        heads=st.sampled_from((1, 2)),
        vocab=st.integers(4, 32),
    )


def hugging_face_accumulation(model, optimizer, micro_batches, loss_fn, accumulation_steps):
    """The Hugging Face way: the model's own loss, Σ CE ÷ the window's counted tokens (num_items_in_batch) for a causal
    LM, each micro-batch's mean weighted by cⱼ / c_window for a masked LM (whose loss takes no num_items_in_batch)."""
    for start in range(0, len(micro_batches), accumulation_steps):
        window = micro_batches[start : start + accumulation_steps]
        counted = sum(loss_fn.count(y) for _, y in window)
        for x, y in window:
            inputs = x if isinstance(x, dict) else {"input_ids": x}
            if "MaskedLM" in type(model).__name__:
                loss = model(**inputs, labels=y).loss * (loss_fn.count(y) / counted)
            else:
                loss = model(**inputs, labels=y, num_items_in_batch=counted).loss
            loss.backward()
        optimizer.step()
        optimizer.zero_grad()
