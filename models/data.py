"""Reading packed token shards (the tokenize stage's ``manifest.json`` format) for training.

Format, as written by the tokenize stage: ``manifest.json`` lists, per split and
per stage length (``stage1``, ``stage2``), shard files of 2-D uint16/uint32 arrays
(sequences x seq_len). Shards are memory-mapped, so data larger than RAM works.
Batches are drawn by a generator seeded with (seed, step, rank): a resumed run
draws exactly the batches the interrupted one would have.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

SUPPORTED_FORMAT = "starflow-shards/1"


class ShardedArray:
    """Several memory-mapped 2-D shards seen as one array of sequences (row indexing only)."""

    def __init__(self, shards: list[np.ndarray]):
        self.shards = shards
        self.offsets = np.cumsum([0] + [len(s) for s in shards])
        self.shape = (int(self.offsets[-1]), shards[0].shape[1])
        self.dtype = shards[0].dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        rows = np.arange(*index.indices(len(self))) if isinstance(index, slice) else np.asarray(index).reshape(-1)
        shard_of = np.searchsorted(self.offsets, rows, side="right") - 1
        out = np.empty((len(rows), self.shape[1]), dtype=self.dtype)
        for s in np.unique(shard_of):
            mask = shard_of == s
            out[mask] = self.shards[s][rows[mask] - self.offsets[s]]
        return out


class TokenShards:
    def __init__(self, data_dir: str | Path, stage: str = "stage1"):
        self.dir = Path(data_dir)
        path = self.dir / "manifest.json"
        if not path.exists():
            raise FileNotFoundError(f"{path}: no shard manifest (run the tokenize stage first)")
        self.manifest = json.loads(path.read_text())
        if self.manifest.get("format") != SUPPORTED_FORMAT:
            raise ValueError(f"{path}: format {self.manifest.get('format')!r}, expected {SUPPORTED_FORMAT!r}")
        if stage not in self.manifest["seq_len"]:
            raise ValueError(f"{path}: no stage {stage!r}; has {sorted(self.manifest['seq_len'])}")
        self.stage = stage
        self.seq_len = int(self.manifest["seq_len"][stage])
        self.vocab_size = int(self.manifest["vocab_size"])

    def split(self, name: str) -> ShardedArray:
        files = self.manifest["splits"][name]["shards"][self.stage]
        if not files:
            raise ValueError(f"{self.dir}: split {name!r} has no {self.stage} sequences")
        arrays = [np.load(self.dir / f["file"], mmap_mode="r") for f in files]
        for f, arr in zip(files, arrays):
            if arr.ndim != 2 or arr.shape[1] != self.seq_len:
                raise ValueError(f"{self.dir / f['file']}: expected shape (n, {self.seq_len}), got {arr.shape}")
        return ShardedArray(arrays)


def random_batch(arr, batch_size: int, seed: int, step: int, rank: int = 0, world: int = 1) -> torch.Tensor:
    """This rank's slice of the global batch of ``batch_size * world`` rows drawn for ``step``.

    The global batch depends only on (seed, step), so 1 process with batch 8 and 2 processes
    with batch 4 see the same rows: the data position is the step number.
    """
    rng = np.random.default_rng([seed, step])
    rows = rng.integers(0, len(arr), size=batch_size * world)[rank * batch_size : (rank + 1) * batch_size]
    return torch.from_numpy(arr[np.sort(rows)].astype(np.int64))


def sequential_batches(arr, batch_size: int, max_batches: int):
    for i in range(min(max_batches, (len(arr) + batch_size - 1) // batch_size)):
        yield torch.from_numpy(arr[i * batch_size : (i + 1) * batch_size].astype(np.int64))
