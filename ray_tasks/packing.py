"""Packing token streams into fixed-length sequences, stored as NumPy shards.

Shard format (what ``models/data.py`` reads, without importing this module):
``{split}.npy`` holds a 2-D array (sequences x seq_len) of uint16 (vocab < 65536)
or uint32 token ids, and ``meta.json`` records seq_len, dtype, vocab size and
counts. Documents are concatenated (each ends with ``<|endoftext|>``) and cut
into windows; the tail shorter than one window is dropped and counted.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np


def pack(token_lists: Iterable[list[int]], seq_len: int, vocab_size: int) -> tuple[np.ndarray, int]:
    """(array of shape [n, seq_len], dropped tail tokens)."""
    dtype = np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32
    stream = np.fromiter((t for ids in token_lists for t in ids), dtype=np.int64)
    n = len(stream) // seq_len
    packed = stream[: n * seq_len].astype(dtype).reshape(n, seq_len)
    return packed, int(len(stream) - n * seq_len)
