"""Shards from raw token streams, for the training tests and benchmarks/train.py.

The tokenize stage writes shards from documents (ray_tasks/tokenize/shards.py); here one
document per split is enough, so a test controls exactly which tokens the model sees.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ray_tasks.tokenize.shards import FORMAT, token_dtype, write_split


def write_test_shards(out: Path, train_stream: np.ndarray, val_stream: np.ndarray, seq_len: int, vocab_size: int,
                      seq_len_stage2: int | None = None, shard_sequences: int = 1 << 16) -> dict:
    """A manifest and shards in the tokenize stage's format: ``train_stream`` and ``val_stream`` as one
    document each, cut at ``seq_len`` (stage 1) and ``seq_len_stage2`` (stage 2; default ``seq_len``),
    at most ``shard_sequences`` rows per shard file (a stream that grows at its end then keeps its
    full shards byte for byte: grown data)."""
    seq_lens = {"stage1": seq_len, "stage2": seq_len_stage2 or seq_len}
    manifest = {"format": FORMAT, "vocab_size": vocab_size, "seq_len": seq_lens, "splits": {},
                "dtype": str(token_dtype(vocab_size))}
    for split, stream in (("train", train_stream), ("val", val_stream)):
        manifest["splits"][split] = write_split(out, split, [np.asarray(stream)], vocab_size, seq_lens,
                                                 shard_sequences)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest
