"""Reading packed token shards (``{split}.npy`` + ``meta.json``) for training.

The format is written by the tokenize stage: a 2-D array (sequences x seq_len)
of uint16/uint32 ids. Arrays are memory-mapped, so shards larger than RAM work.
Batches are drawn by a generator seeded with (seed, step, rank): a resumed run
draws exactly the batches the interrupted one would have.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch


class TokenShards:
    def __init__(self, data_dir: str | Path):
        self.dir = Path(data_dir)
        meta_path = self.dir / "meta.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"{meta_path}: no shard metadata (run the tokenize stage first)")
        self.meta = json.loads(meta_path.read_text())
        self.seq_len = int(self.meta["seq_len"])
        self.vocab_size = int(self.meta["vocab_size"])

    def split(self, name: str) -> np.ndarray:
        arr = np.load(self.dir / f"{name}.npy", mmap_mode="r")
        if arr.ndim != 2 or arr.shape[1] != self.seq_len:
            raise ValueError(f"{self.dir / name}.npy: expected shape (n, {self.seq_len}), got {arr.shape}")
        if len(arr) == 0:
            raise ValueError(f"{self.dir / name}.npy: no sequences")
        return arr


def random_batch(arr: np.ndarray, batch_size: int, seed: int, step: int, rank: int = 0) -> torch.Tensor:
    rng = np.random.default_rng([seed, step, rank])
    idx = np.sort(rng.integers(0, len(arr), size=batch_size))
    return torch.from_numpy(arr[idx].astype(np.int64))


def sequential_batches(arr: np.ndarray, batch_size: int, max_batches: int):
    for i in range(min(max_batches, (len(arr) + batch_size - 1) // batch_size)):
        yield torch.from_numpy(arr[i * batch_size : (i + 1) * batch_size].astype(np.int64))
