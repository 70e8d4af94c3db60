"""General-purpose compressors at their highest settings, as bits per byte: a floor for the model.

A language model of code should compress held-out code better than gzip; how far it is from
xz and zstd tells a reader whether training worked (issue 17). Each figure is the compressed
size in bits over the input's bytes, from the standard Python bindings (zlib/gzip, bz2, lzma)
and ``zstandard`` (https://python-zstandard.readthedocs.io), the same as the command lines
``gzip -9``, ``bzip2 -9``, ``xz -9e`` and ``zstd --ultra -22``. Container headers are counted
(a few dozen bytes): they are part of what a user would store.

Memory: the input is held once; xz -9e's encoder takes about 674 MiB (liblzma's figure for
preset 9), zstd -22 less than that on inputs below its 128 MiB window.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
from typing import Callable

import zstandard


def _zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=zstandard.MAX_COMPRESSION_LEVEL).compress(data)


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": lambda data: gzip.compress(data, compresslevel=9, mtime=0),
    "bzip2": lambda data: bz2.compress(data, compresslevel=9),
    "xz": lambda data: lzma.compress(data, format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME),
    "zstd": _zstd,
}
"""Name -> compress function, each at its highest level (``xz``: preset 9 | PRESET_EXTREME, i.e. -9e)."""


def compressed_bits_per_byte(data: bytes) -> dict[str, float]:
    """Bits per input byte of each compressor on ``data``."""
    if not data:
        raise ValueError("compressors: no bytes to compress")
    return {name: 8 * len(compress(data)) / len(data) for name, compress in COMPRESSORS.items()}
