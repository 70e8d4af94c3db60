"""StarCoder2 architecture configs: the paper's sizes and tiny CPU presets.

Shape facts from starcoder2_train_eval.md §A1: GQA, sliding-window attention in
every layer, RoPE, LayerNorm with bias (eps 1e-5), plain GELU-tanh MLP at 4x
hidden, bos = eos = id 0, tied embeddings except at 15B. Pre-training ran without
dropout, so the presets set it to 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class ModelShape:
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    max_position_embeddings: int = 4096
    sliding_window: int | None = 4096
    rope_theta: float = 100_000.0
    tie_word_embeddings: bool = True


PRESETS: dict[str, ModelShape] = {
    # ~1.3M parameters with a 4k vocab: trains on 2 CPU cores in minutes.
    "tiny": ModelShape(128, 4, 4, 2, 512, max_position_embeddings=1024, sliding_window=128),
    "3b": ModelShape(3072, 30, 24, 2, 12288, 16384, 4096, 999999.4420358813),
    "7b": ModelShape(4608, 32, 36, 4, 18432, 16384, 4096, 1_000_000.0),
    "15b": ModelShape(6144, 40, 48, 4, 24576, 16384, 4096, 100_000.0, tie_word_embeddings=False),
}


def resolve(preset: str, **overrides) -> ModelShape:
    """A preset's shape with some fields replaced (params.yaml ``train.model``)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; expected one of {sorted(PRESETS)}")
    return replace(PRESETS[preset], **overrides)


def starcoder2_config(shape: ModelShape, vocab_size: int):
    from transformers import Starcoder2Config

    return Starcoder2Config(
        vocab_size=vocab_size,
        **asdict(shape),
        hidden_act="gelu_pytorch_tanh",
        norm_epsilon=1e-5,
        use_bias=True,
        attention_dropout=0.0,
        residual_dropout=0.0,
        embedding_dropout=0.0,
        initializer_range=0.02,
        bos_token_id=0,
        eos_token_id=0,
        use_cache=True,
    )
