"""The portrait: a Bloom filter of the training set's strided character windows (Data Portraits,
Marone & Van Durme 2023, https://arxiv.org/abs/2303.03919).

Every file contributes its windows ``content[i:i+W]`` for ``i = 0, S, 2S, ...`` (a file shorter
than W contributes itself whole). A query tests the window at *every* offset, so any verbatim
copy of at least ``W + S - 1`` characters holds one indexed window and is found; a window that
was never indexed answers "present" with the configured false-positive rate.

Why rbloom (https://github.com/KenanHanke/rbloom): a maintained Rust Bloom filter sized from
(expected items, false-positive rate), with save/load. Its persistence needs a hash function
stable across processes (Python's ``hash`` of ``str`` is salted per process), so windows are
hashed with xxHash's 128-bit XXH3, which rbloom takes as a signed 128-bit int.

One filter per segment: a batch of new files adds a segment and leaves the others as they are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash
from rbloom import Bloom

_TOP = 1 << 127


def window_hash(window: str, _digest=xxhash.xxh3_128_intdigest) -> int:
    """XXH3-128 of the window's UTF-8 as a signed 128-bit int (rbloom's contract)."""
    value = _digest(window.encode("utf-8", "surrogatepass"))
    return value - (_TOP << 1) if value >= _TOP else value


def indexed_windows(text: str, width: int, stride: int) -> list[str]:
    """The windows a training file contributes: strided, or the whole file when shorter than one."""
    if len(text) < width:
        return [text] if text else []
    return [text[i:i + width] for i in range(0, len(text) - width + 1, stride)]


def window_count(content: pa.Array | pa.ChunkedArray, width: int, stride: int) -> int:
    """How many windows ``indexed_windows`` yields for a column, computed without slicing (sizes the filter)."""
    chars = pc.fill_null(pc.utf8_length(content), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    strided = np.where(chars >= width, (chars - width) // stride + 1, (chars > 0).astype(np.int64))
    return int(strided.sum())


class Portrait:
    """The segments' filters, queried together (a window is present if any segment has it)."""

    def __init__(self, filters: list[Bloom], width: int):
        self.filters = filters
        self.width = width

    @classmethod
    def load(cls, paths: list[Path], width: int) -> "Portrait":
        return cls([Bloom.load(str(p), window_hash) for p in paths], width)

    def __contains__(self, window: str) -> bool:
        return any(window in f for f in self.filters)

    def hits(self, text: str) -> np.ndarray:
        """Offsets of ``text`` whose window the portrait holds (the whole text when shorter than one)."""
        if len(text) < self.width:
            return np.array([0] if text and text in self else [], dtype=np.int64)
        return np.array([i for i in range(len(text) - self.width + 1) if text[i:i + self.width] in self],
                        dtype=np.int64)


def new_filter(n_windows: int, false_positive_rate: float) -> Bloom:
    """An empty filter sized for ``n_windows`` at the configured rate (at least one item: rbloom needs it)."""
    return Bloom(max(n_windows, 1), false_positive_rate, window_hash)
