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
``SplitWriter`` writes all of them document by document (the stage never holds a
split's stream in memory).
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
    writer = SplitWriter(out, split, [len(d) for d in docs], vocab_size, seq_lens, shard_sequences)
    for doc in docs:
        writer.write(doc)
    return writer.close()


class SplitWriter:
    """One split written document by document, with the memory of one document: the stream and
    every shard are ``.npy`` files whose shapes follow from the documents' lengths (known before
    their tokens), so each file gets its header first and then its rows as they come. The bytes
    are those ``np.save`` of the whole arrays writes (same header, same data), hand-written
    because numpy has no appending ``.npy`` writer.

        w = SplitWriter(out, "train", lengths, vocab, {"stage1": 256}, 65536)
        for doc in docs: w.write(doc)
        entry = w.close()          # the manifest entry
    """

    def __init__(self, out: Path, split: str, lengths: list[int], vocab_size: int, seq_lens: dict[str, int],
                 shard_sequences: int):
        self.out, self.split = Path(out), split
        self.dtype = token_dtype(vocab_size)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.total = int(self.lengths.sum())
        self.written = 0
        self.hash = hashlib.sha256()
        self.stream = _npy(self.out / f"{split}.tokens.npy", self.dtype, (self.total,))
        self.shards = {stage: _Shards(self.out, split, stage, seq_len, self.total, shard_sequences, self.dtype)
                       for stage, seq_len in seq_lens.items()}

    def write(self, doc: np.ndarray) -> None:
        tokens = np.ascontiguousarray(np.asarray(doc).astype(self.dtype, copy=False))
        if self.written + tokens.size > self.total:
            raise ValueError(f"{self.split}: more tokens than the documents' lengths announced")
        data = tokens.tobytes()
        self.stream.write(data)
        self.hash.update(data)
        for shards in self.shards.values():
            shards.write(tokens)
        self.written += tokens.size

    def close(self) -> dict:
        self.stream.close()
        if self.written != self.total:
            raise ValueError(f"{self.split}: {self.written} tokens written, {self.total} announced")
        starts = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        np.save(self.out / f"{self.split}.docs.npy", starts)
        entry: dict = {"tokens": self.total, "documents": len(self.lengths), "shards": {}, "tail_tokens_dropped": {},
                       "sha256": self.hash.hexdigest()}
        for stage, shards in self.shards.items():
            entry["shards"][stage] = shards.close()
            entry["tail_tokens_dropped"][stage] = int(self.total - shards.limit)
        return entry


class _Shards:
    """One stage's windows of the stream: shard files of at most ``shard_sequences`` rows, filled in order."""

    def __init__(self, out: Path, split: str, stage: str, seq_len: int, total: int, shard_sequences: int,
                 dtype: np.dtype):
        self.out, self.split, self.stage, self.seq_len, self.dtype = out, split, stage, seq_len, dtype
        n = total // seq_len
        self.limit = n * seq_len
        self.rows = [min(shard_sequences, n - start) for start in range(0, n, shard_sequences)]
        self.files: list[dict] = []
        self.fh = None
        self.left = 0
        self.written = 0

    def write(self, tokens: np.ndarray) -> None:
        tokens = tokens[: max(0, self.limit - self.written)]
        pos = 0
        while pos < tokens.size:
            if self.left == 0:
                self._next()
            take = min(self.left, tokens.size - pos)
            self.fh.write(tokens[pos: pos + take].tobytes())
            pos += take
            self.left -= take
            self.written += take

    def _next(self) -> None:
        if self.fh is not None:
            self.fh.close()
        rows = self.rows[len(self.files)]
        name = f"{self.split}.{self.stage}.{len(self.files):05d}.npy"
        self.fh = _npy(self.out / name, self.dtype, (rows, self.seq_len))
        self.left = rows * self.seq_len
        self.files.append({"file": name, "sequences": int(rows)})

    def close(self) -> list[dict]:
        if self.fh is not None:
            self.fh.close()
        if self.written != self.limit:
            raise ValueError(f"{self.split}.{self.stage}: {self.written} of {self.limit} window tokens written")
        return self.files


def _npy(path: Path, dtype: np.dtype, shape: tuple[int, ...]):
    """An open file holding a ``.npy`` header for an array of ``shape``; the caller writes the data."""
    fh = open(path, "wb")
    np.lib.format.write_array_header_1_0(
        fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape})
    return fh
