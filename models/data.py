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
        return self._open([f["file"] for f in files])

    def train_files(self, names: list[str]) -> ShardedArray | None:
        """Some of the training shards of this stage length, by file name (None for none): a
        continued run's new or old shards."""
        listed = {f["file"] for f in self.manifest["splits"]["train"]["shards"][self.stage]}
        if unknown := [n for n in names if n not in listed]:
            raise ValueError(f"{self.dir}: {unknown} are not {self.stage} training shards of this manifest")
        return self._open(names) if names else None

    def _open(self, names: list[str]) -> ShardedArray:
        arrays = [np.load(self.dir / name, mmap_mode="r") for name in names]
        for name, arr in zip(names, arrays):
            if arr.ndim != 2 or arr.shape[1] != self.seq_len:
                raise ValueError(f"{self.dir / name}: expected shape (n, {self.seq_len}), got {arr.shape}")
        return ShardedArray(arrays)


def random_batch(arr, batch_size: int, seed: int, step: int, rank: int = 0, world: int = 1) -> torch.Tensor:
    """This rank's slice of the global batch of ``batch_size * world`` rows drawn for ``step``.

    The global batch depends only on (seed, step), so 1 process with batch 8 and 2 processes
    with batch 4 see the same rows: the data position is the step number.
    """
    rng = np.random.default_rng([seed, step])
    rows = rng.integers(0, len(arr), size=batch_size * world)[rank * batch_size : (rank + 1) * batch_size]
    return torch.from_numpy(arr[np.sort(rows)].astype(np.int64))


def mixed_batch(new, old, replay_fraction: float, batch_size: int, seed: int, step: int, rank: int = 0,
                world: int = 1) -> torch.Tensor:
    """``random_batch`` over two pools: this rank's slice of a global batch of ``batch_size * world``
    rows of which ``replay_fraction`` come from ``old`` (the shards a parent model trained on), the
    rest from ``new``; either may be None (then every row comes from the other).

    The old-row count of a step is ``floor(f * n + u)`` with ``u`` uniform in [0, 1) (stochastic
    rounding): its expectation is exactly ``f * n`` and each batch has one of the two nearest
    counts, so a fraction such as 0.1 of 8 rows is honoured on average, not rounded away. Which
    positions are old is shuffled, so each rank sees the same mix. Like ``random_batch``, the
    global batch depends only on (seed, step)."""
    n_new, n_old = (len(a) if a is not None else 0 for a in (new, old))
    if not n_new and not n_old:
        raise ValueError("a mixed batch needs at least one non-empty pool")
    share = replay_fraction if n_old and n_new else float(n_old > 0)
    n = batch_size * world
    rng = np.random.default_rng([seed, step])
    old_count = min(n, int(np.floor(share * n + rng.random())))
    is_old = np.zeros(n, dtype=bool)
    is_old[:old_count] = True
    rng.shuffle(is_old)
    rows = np.empty(n, dtype=np.int64)
    if old_count:
        rows[is_old] = rng.integers(0, n_old, size=old_count)
    if old_count < n:
        rows[~is_old] = rng.integers(0, n_new, size=n - old_count)
    mine = slice(rank * batch_size, (rank + 1) * batch_size)
    is_old, rows = is_old[mine], rows[mine]
    pool = old if old is not None else new
    out = np.empty((batch_size, pool.shape[1]), dtype=pool.dtype)
    for chosen, source in ((is_old, old), (~is_old, new)):
        if chosen.any():
            out[chosen] = source[rows[chosen]]
    return torch.from_numpy(out.astype(np.int64))


def sequential_batches(arr, batch_size: int, max_batches: int):
    for i in range(min(max_batches, (len(arr) + batch_size - 1) // batch_size)):
        yield torch.from_numpy(arr[i * batch_size : (i + 1) * batch_size].astype(np.int64))
