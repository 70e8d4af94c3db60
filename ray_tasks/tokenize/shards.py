"""Packed token shards: the tokenize stage's output format.

Layout of the output folder (``models/data.py`` reads it by this description):

    manifest.json                  format, vocab, dtype, per-split counts, shard index
    {split}.tokens.npy             the split's 1-D token stream (documents back to back)
    {split}.docs.npy               start offset of every document in that stream
    {split}.{stage}.{k:05d}.npy    2-D windows (sequences x seq_len of that stage)

Every stage length (``stage1``: base pre-training, ``stage2``: long context)
cuts the same stream, so both stages see the same documents; the tail shorter
than one window is dropped and counted. Windows are views of the stream, written
in shards of at most ``shard_sequences`` rows so no file grows without bound.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

FORMAT = "starflow-shards/1"


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


def write_split(
    out: Path, split: str, docs: list[np.ndarray], vocab_size: int, seq_lens: dict[str, int], shard_sequences: int
) -> dict:
    """Write one split's stream, document index and windowed shards; return its manifest entry."""
    dtype = token_dtype(vocab_size)
    lengths = np.array([len(d) for d in docs], dtype=np.int64)
    stream = np.concatenate(docs).astype(dtype) if docs else np.zeros(0, dtype)
    np.save(out / f"{split}.tokens.npy", stream)
    np.save(out / f"{split}.docs.npy", np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64))
    entry: dict = {"tokens": int(stream.size), "documents": len(docs), "shards": {}, "tail_tokens_dropped": {},
                   "sha256": hashlib.sha256(stream.tobytes()).hexdigest()}
    for stage, seq_len in seq_lens.items():
        n = stream.size // seq_len
        windows = stream[: n * seq_len].reshape(n, seq_len)
        files = []
        for k, start in enumerate(range(0, n, shard_sequences)):
            name = f"{split}.{stage}.{k:05d}.npy"
            block = windows[start : start + shard_sequences]
            np.save(out / name, block)
            files.append({"file": name, "sequences": int(len(block))})
        entry["shards"][stage] = files
        entry["tail_tokens_dropped"][stage] = int(stream.size - n * seq_len)
    return entry

