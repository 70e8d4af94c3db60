"""StarCoder2 architecture configs: the paper's sizes and a tiny CPU preset.

Shape facts from the StarCoder2 paper (https://arxiv.org/abs/2402.19173) and the released
configs (https://huggingface.co/bigcode/starcoder2-3b, -7b, -15b): GQA, sliding-window
attention in every layer, RoPE, LayerNorm with bias (eps 1e-5), plain GELU-tanh MLP at 4x
hidden, bos = eos = id 0, tied embeddings except at 15B. Pre-training ran without dropout,
so the presets set it to 0. The fields are documented on ``ModelShape`` (models/params.py).
"""

from __future__ import annotations

from models.params import ModelShape

PRESETS: dict[str, ModelShape] = {
    # ~1.3M parameters with a 4k vocab: trains on 2 CPU cores in minutes.
    "tiny": ModelShape(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                       intermediate_size=512, max_position_embeddings=1024, sliding_window=128, rope_theta=100_000.0,
                       tie_word_embeddings=True),
    "3b": ModelShape(hidden_size=3072, num_hidden_layers=30, num_attention_heads=24, num_key_value_heads=2,
                     intermediate_size=12288, max_position_embeddings=16384, sliding_window=4096,
                     rope_theta=999999.4420358813, tie_word_embeddings=True),
    "7b": ModelShape(hidden_size=4608, num_hidden_layers=32, num_attention_heads=36, num_key_value_heads=4,
                     intermediate_size=18432, max_position_embeddings=16384, sliding_window=4096,
                     rope_theta=1_000_000.0, tie_word_embeddings=True),
    "15b": ModelShape(hidden_size=6144, num_hidden_layers=40, num_attention_heads=48, num_key_value_heads=4,
                      intermediate_size=24576, max_position_embeddings=16384, sliding_window=4096,
                      rope_theta=100_000.0, tie_word_embeddings=False),
}


def starcoder2_config(shape: ModelShape, vocab_size: int):
    """The HF ``Starcoder2Config`` of a shape, with the settings every StarCoder2 model shares."""
    from transformers import Starcoder2Config

    return Starcoder2Config(
        vocab_size=vocab_size,
        **shape.model_dump(),
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

