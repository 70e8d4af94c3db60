"""Validation perplexity and bits per byte of an exported model on the validation split.

Perplexity reads the packed windows (the first ``max_batches`` batches). Bits per byte scores
the validation token stream itself, so that every token it counts is predicted once and the
bytes those tokens spell are one contiguous text, the one the compressors are given
(``ray_tasks/evaluate/compressors.py``): the two figures are on exactly the same bytes.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.data import TokenShards, sequential_batches


@torch.no_grad()
def perplexity(model_dir: str, shards_dir: str, batch_size: int, max_batches: int) -> dict[str, float]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    val = TokenShards(shards_dir).split("val")
    total, tokens = 0.0, 0
    for batch in sequential_batches(val, batch_size, max_batches):
        loss = model(input_ids=batch, labels=batch).loss.item()
        n = batch.shape[0] * (batch.shape[1] - 1)  # labels are shifted: seq_len-1 predictions per row
        total += loss * n
        tokens += n
    mean = total / tokens
    return {"val_loss": mean, "perplexity": math.exp(mean), "tokens": tokens}


def to_bits_per_byte(nats: float, n_bytes: int) -> float:
    """Summed cross-entropy in nats over the tokens that spell ``n_bytes`` bytes, as bits per byte."""
    if n_bytes <= 0:
        raise ValueError(f"bits per byte needs a positive byte count, got {n_bytes}")
    return nats / math.log(2) / n_bytes


@dataclass(frozen=True)
class ScoredText:
    """What bits per byte was measured on: the figures and the very bytes, for the compressors."""

    nats: float
    """Cross-entropy summed over the predicted tokens (natural log)."""
    tokens: int
    """Tokens predicted (each once, each with up to seq_len-1 tokens of context)."""
    data: bytes
    """UTF-8 text the predicted tokens decode to (special tokens as their literal text)."""

    @property
    def bits_per_byte(self) -> float:
        return to_bits_per_byte(self.nats, len(self.data))

    def summary(self) -> dict:
        return {"bits_per_byte": self.bits_per_byte, "nats": self.nats, "tokens": self.tokens,
                "bytes": len(self.data), "bytes_per_token": len(self.data) / self.tokens,
                "sha256": hashlib.sha256(self.data).hexdigest()}


@torch.no_grad()
def score_validation_stream(model_dir: str, shards_dir: str, batch_size: int, max_tokens: int | None) -> ScoredText:
    """Sum the model's loss over the validation stream (its first ``max_tokens`` predicted tokens).

    Windows of seq_len overlap by one token, so token i+1 of the stream is predicted from the
    window holding token i: all predicted tokens form one contiguous run, stream[1 : 1 + n]. The
    tail shorter than a window is not scored (under seq_len tokens). Bytes are counted on the decoded
    text, so a character whose bytes are split across the two ends of the run (at most one at each
    end) counts as U+FFFD; the compressors are given the same text, so the comparison stays exact.
    """
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    shards = TokenShards(shards_dir)
    stream = np.load(Path(shards_dir) / "val.tokens.npy", mmap_mode="r")
    windows = _overlapping_windows(len(stream), shards.seq_len, max_tokens)
    if not windows:
        raise ValueError(f"{shards_dir}: the validation stream has {len(stream)} tokens, fewer than seq_len={shards.seq_len}")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    nats = 0.0
    for i in range(0, len(windows), batch_size):
        batch = torch.from_numpy(np.stack([stream[s:s + shards.seq_len] for s in windows[i:i + batch_size]]).astype(np.int64))
        logits = model(input_ids=batch).logits[:, :-1].float()
        nats += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1),
                                                  reduction="sum").double().item()
    predicted = len(windows) * (shards.seq_len - 1)
    # The tokenizer's own decoder (byte-level BPE: exact bytes), without transformers' clean-up of spaces.
    tok = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    text = tok.decode(stream[1:1 + predicted].tolist(), skip_special_tokens=False)
    return ScoredText(nats=nats, tokens=predicted, data=text.encode("utf-8"))


def token_bytes(tokenizer_dir: str | Path) -> list[bytes]:
    """The UTF-8 bytes each token id spells, indexed by id: what bits per byte divides by.

    StarFlow's tokenizers are byte-level BPE (``ray_tasks/tokenize/tokenizer.py``): each token is a
    string over GPT-2's byte alphabet, so mapping its characters back gives its exact bytes, even
    for a token that holds part of a multi-byte character (decoding it alone would give U+FFFD).
    Special tokens count as their literal text, as ``score_validation_stream`` decodes them; a
    token outside the byte alphabet (another kind of tokenizer) as its own UTF-8 text.
    """
    from tokenizers import Tokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    tok = Tokenizer.from_file(str(Path(tokenizer_dir) / "tokenizer.json"))
    to_byte = {c: b for b, c in bytes_to_unicode().items()}
    special = {t.content for t in tok.get_added_tokens_decoder().values()}
    table = []
    for i in range(tok.get_vocab_size()):
        piece = tok.id_to_token(i) or ""
        byte_level = piece not in special and all(c in to_byte for c in piece)
        table.append(bytes(to_byte[c] for c in piece) if byte_level else piece.encode("utf-8"))
    return table


def eval_window_bytes(arr, batch_size: int, max_batches: int, table: list[bytes]) -> tuple[bytes, int]:
    """The bytes the predicted tokens of the first ``max_batches`` windows spell, and how many tokens.

    These are the windows ``models/train.py`` validates on (``sequential_batches``); each row's
    first token is context only (labels are shifted), so it is not counted."""
    rows = arr[: min(len(arr), batch_size * max_batches)]
    data = b"".join(table[t] for row in rows for t in row[1:].tolist())
    return data, len(rows) * (rows.shape[1] - 1)


def _overlapping_windows(n_tokens: int, seq_len: int, max_tokens: int | None) -> list[int]:
    """Start offsets of windows with stride seq_len-1 (each predicts seq_len-1 new tokens)."""
    stride = seq_len - 1
    count = (n_tokens - 1) // stride
    if max_tokens is not None:
        count = min(count, math.ceil(max_tokens / stride))
    return [k * stride for k in range(count)]
