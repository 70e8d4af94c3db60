"""Bits per byte of the validation stream (models/perplexity.py): the conversion and what is counted."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from models.data import TokenShards
from models.perplexity import eval_window_bytes, score_validation_stream, to_bits_per_byte, token_bytes

# Multi-byte characters first (so bytes != characters is exercised), plain ASCII at the end where
# the tail that fills no window is cut.
TEXT = "# café → naïve ünïcode λ\n" + "".join(f"def f{i}(x):\n    return x * {i} + {i % 7}\n\n" for i in range(40))
SEQ_LEN = 16


def tiny_lm(root: Path, uniform: bool = False) -> tuple[str, str, list[int]]:
    """(model dir, shards dir, val stream): a BPE tokenizer trained on TEXT, TEXT as the validation
    stream after one ``<|endoftext|>`` (so the predicted tokens spell TEXT from its first byte), and a
    tiny StarCoder2; ``uniform``: its output layer zeroed, so it predicts every token with 1/vocab."""
    import torch
    from transformers import Starcoder2ForCausalLM

    from models.presets import PRESETS, starcoder2_config
    from ray_tasks.tokenize.tokenizer import save_hf_tokenizer, train_bpe
    from tests.models.helpers import write_test_shards

    shards, model_dir = root / "tokenize", root / "model"
    shards.mkdir(parents=True)
    tok = train_bpe([TEXT], vocab_size=320, min_frequency=1)
    stream = [0, *tok.encode(TEXT, add_special_tokens=False).ids]
    write_test_shards(shards, np.asarray(stream, dtype=np.uint16), np.asarray(stream, dtype=np.uint16), SEQ_LEN,
                      tok.get_vocab_size())
    torch.manual_seed(0)
    shape = PRESETS["tiny"].model_copy(update={"tie_word_embeddings": False})
    model = Starcoder2ForCausalLM(starcoder2_config(shape, tok.get_vocab_size()))
    if uniform:
        with torch.no_grad():
            model.lm_head.weight.zero_()
    model.save_pretrained(model_dir)
    save_hf_tokenizer(tok, model_dir, model_max_length=64)
    return str(model_dir), str(shards), stream


def test_conversion_worked_by_hand():
    # 4 tokens at 2 nats each over 10 bytes: 8 nats = 8 / ln 2 = 11.5416 bits, / 10 bytes.
    assert to_bits_per_byte(8.0, 10) == pytest.approx(1.1541560327, rel=1e-9)
    # A byte predicted with probability 1/2 costs ln 2 nats: exactly 1 bit per byte.
    assert to_bits_per_byte(1000 * math.log(2), 1000) == pytest.approx(1.0, rel=1e-12)
    with pytest.raises(ValueError, match="positive byte count"):
        to_bits_per_byte(1.0, 0)


def test_uniform_model_scores_log2_vocab_per_token(tmp_path):
    model_dir, shards, stream = tiny_lm(tmp_path, uniform=True)
    vocab = 320
    scored = score_validation_stream(model_dir, shards, batch_size=4, max_tokens=None)
    windows = (len(stream) - 1) // (SEQ_LEN - 1)
    assert scored.tokens == windows * (SEQ_LEN - 1)
    # Every predicted token is counted once and every byte it spells is counted once.
    assert scored.data == TEXT.encode()[: len(scored.data)]
    assert len(TEXT.encode()) - len(scored.data) < SEQ_LEN * 8  # only the tail short of a window is left
    assert scored.nats == pytest.approx(scored.tokens * math.log(vocab), rel=1e-5)
    assert scored.bits_per_byte == pytest.approx(scored.tokens * math.log2(vocab) / len(scored.data), rel=1e-5)
    assert scored.summary()["bytes"] == len(scored.data)


def test_max_tokens_bounds_the_scored_text(tmp_path):
    model_dir, shards, _ = tiny_lm(tmp_path)
    full = score_validation_stream(model_dir, shards, batch_size=4, max_tokens=None)
    part = score_validation_stream(model_dir, shards, batch_size=4, max_tokens=20)
    assert part.tokens == 2 * (SEQ_LEN - 1)  # rounded up to whole windows
    assert full.data.startswith(part.data) and len(part.data) < len(full.data)
    assert 0 < part.bits_per_byte and 0 < full.bits_per_byte


def test_token_bytes_spell_the_text_exactly(tmp_path):
    """Summing per-token bytes gives the decoded text's bytes, also where a token holds part of a
    multi-byte character (each of TEXT's accented letters is two bytes, λ and → more)."""
    model_dir, _, stream = tiny_lm(tmp_path)
    table = token_bytes(model_dir)
    assert b"".join(table[t] for t in stream[1:]) == TEXT.encode()
    assert table[0] == b"<|endoftext|>"  # special tokens: their literal text, as decoding gives
    assert any(len(b) == 1 and b[0] >= 0x80 for b in table)  # lone continuation/lead bytes exist


def test_eval_window_bytes_count_predicted_tokens_once(tmp_path):
    model_dir, shards, stream = tiny_lm(tmp_path)
    val = TokenShards(shards).split("val")
    data, tokens = eval_window_bytes(val, batch_size=2, max_batches=2, table=token_bytes(model_dir))
    assert tokens == 4 * (SEQ_LEN - 1)
    rows = [stream[i * SEQ_LEN:(i + 1) * SEQ_LEN] for i in range(4)]
    table = token_bytes(model_dir)
    assert data == b"".join(table[t] for row in rows for t in row[1:])
