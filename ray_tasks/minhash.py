"""MinHash signatures and LSH band keys for near-deduplication, vectorised over Arrow batches.

The shingling is the seed's (stack_v2_curation.md §5.2): ``content.lower()`` split on
Unicode ``\\W`` (empty tokens between consecutive separators are kept as tokens), word
5-grams, documents with fewer than 5 tokens get no shingles (so they all share the
all-MAX signature and collapse into one cluster, as in the seed).

What differs from the seed, and why (measured on the default corpus, 17.7 MB, 1,459 files,
one core; ``benchmarks/dedup.py`` has the end-to-end figures):

* Tokens are found on the UTF-8 bytes with NumPy instead of ``re.split`` plus Python
  string joins: building the 5-gram strings in Python ran at 3.8 MB/s and was the
  bottleneck of every per-document implementation. Word/non-word is decided per code
  point with the same rule as ``re``'s Unicode ``\\w`` (``str.isalnum()`` or ``_``), so the
  token sequence is the seed's (lowercasing is Arrow's ``utf8_lower``, which differs from
  ``str.lower`` only for a handful of code points with multi-character lower forms).
* A 5-gram is hashed by combining the xxh3-64 hashes of its five tokens (64-bit, fewer
  collisions than the seed's xxh32 of the joined string); only the distinct tokens of a
  batch go through Python, via Arrow's ``dictionary_encode``.
* The 250 permutations are rensa's R-MinHash (Rust), fed the flat shingle hashes in one
  call per batch: 47 MB/s against 3.5 MB/s for the seed's ``(h*a+b) % p`` in NumPy
  (uint32 trick, chunked). Signatures are therefore not bit-identical to the seed's; the
  LSH decisions are checked against exact 5-gram Jaccard instead (tests, benchmark).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import rensa
import xxhash

MAX_HASH = np.uint32(0xFFFFFFFF)
_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xBF58476D1CE4E5B9)
_K3 = np.uint64(0x94D049BB133111EB)


@dataclass(frozen=True)
class MinHashConfig:
    """Near-dedup parameters (the seed's: 5-grams, 250 permutations, 25 x 10, 0.7, seed 42)."""

    ngram_size: int = 5
    num_perm: int = 250
    bands: int = 25
    rows: int = 10
    threshold: float = 0.7
    seed: int = 42
    min_tokens: int = 5

    def __post_init__(self) -> None:
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands*rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        if self.ngram_size < 1 or self.min_tokens < 0:
            raise ValueError("ngram_size must be >= 1 and min_tokens >= 0")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")


# --------------------------------------------------------------------------- tokens
@functools.lru_cache(maxsize=1)
def _word_table() -> np.ndarray:
    """``True`` for code points that ``re``'s Unicode ``\\w`` matches (isalnum or underscore)."""
    table = np.fromiter((chr(c).isalnum() for c in range(0x110000)), dtype=bool, count=0x110000)
    table[ord("_")] = True
    return table


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads every input bit over the 64 output bits."""
    x = x ^ (x >> np.uint64(30))
    x = x * _K2
    x = x ^ (x >> np.uint64(27))
    x = x * _K3
    return x ^ (x >> np.uint64(31))


def _is_word_byte(data: np.ndarray) -> np.ndarray:
    """Per byte of UTF-8 text: is it part of a word character (continuation bytes follow their lead)."""
    table = _word_table()
    isw = table[:256][data]  # exact for ASCII; bytes of multi-byte chars are fixed below
    multi = np.flatnonzero(data >= 0xC0)
    if multi.size:
        n = len(data)
        b = [data[np.minimum(multi + k, n - 1)].astype(np.uint32) for k in range(4)]
        cp2 = ((b[0] & 0x1F) << 6) | (b[1] & 0x3F)
        cp3 = ((b[0] & 0x0F) << 12) | ((b[1] & 0x3F) << 6) | (b[2] & 0x3F)
        cp4 = ((b[0] & 0x07) << 18) | ((b[1] & 0x3F) << 12) | ((b[2] & 0x3F) << 6) | (b[3] & 0x3F)
        cp = np.where(b[0] < 0xE0, cp2, np.where(b[0] < 0xF0, cp3, cp4))
        isw[multi] = table[np.minimum(cp, 0x10FFFF)]
        cont = np.flatnonzero((data & 0xC0) == 0x80)
        isw[cont] = isw[multi[np.maximum(np.searchsorted(multi, cont, side="right") - 1, 0)]]
    return isw


def _token_hashes(contents: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(hash of every token, index of its document) for the seed's ``re.split(r'\\W', text.lower())``."""
    low = pc.utf8_lower(pc.fill_null(contents, "")).cast(pa.large_string())
    if isinstance(low, pa.ChunkedArray):
        low = low.combine_chunks()
    n_docs = len(low)
    offs = np.frombuffer(low.buffers()[1], dtype=np.int64)[low.offset : low.offset + n_docs + 1]
    data_buf = low.buffers()[2]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    data = data[: offs[-1]] if n_docs else data[:0]
    isw = _is_word_byte(data)
    # A separator is the first byte of a non-word character; each one ends a token.
    is_start = (data & 0xC0) != 0x80
    seps = np.flatnonzero(~isw & is_start)
    # Cuts: document boundaries first, then separators at the same byte (stable order).
    seps = seps.astype(np.int64)
    keys = np.insert(seps * 2 + 1, np.searchsorted(seps, offs, side="left"), offs * 2)  # merge, no sort
    cuts = keys >> 1
    is_doc_cut = (keys & 1) == 0
    # token j lies between cut j and cut j+1, except after a document's end cut.
    doc_of_cut = np.cumsum(is_doc_cut) - 1
    tok_valid = ~(is_doc_cut[:-1] & (doc_of_cut[:-1] == n_docs))
    word_before = np.concatenate([[0], np.cumsum(isw, dtype=np.int64)])
    bounds = word_before[cuts]
    tok_start, tok_end = bounds[:-1][tok_valid], bounds[1:][tok_valid]
    tok_doc = doc_of_cut[:-1][tok_valid]
    compact = data[isw]
    # Arrow needs contiguous offsets: token j = compact[start_j:end_j] and end_j == start_{j+1}
    # holds because separators carry no word bytes and documents are back to back.
    tok_offsets = np.concatenate([tok_start[:1], tok_end]) if len(tok_start) else np.zeros(1, np.int64)
    tokens = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(tok_start), [None, pa.py_buffer(tok_offsets.astype(np.int64)), pa.py_buffer(compact.tobytes())]
    )
    enc = pc.dictionary_encode(tokens)
    uniques = enc.dictionary.to_pylist()
    uh = np.fromiter((xxhash.xxh3_64_intdigest(u) for u in uniques), dtype=np.uint64, count=len(uniques))
    idx = enc.indices.to_numpy(zero_copy_only=False)
    return uh[idx], tok_doc


def shingle_hashes(contents: pa.Array, cfg: MinHashConfig) -> tuple[np.ndarray, np.ndarray]:
    """(flat 64-bit hashes of every document's word n-grams, row offsets per document)."""
    n_docs = len(contents)
    th, tok_doc = _token_hashes(contents)
    counts = np.bincount(tok_doc, minlength=n_docs)
    n = cfg.ngram_size
    m = len(th) - n + 1
    if m <= 0:
        return np.zeros(0, np.uint64), np.zeros(n_docs + 1, np.uint64)
    h = th[:m].copy()
    for k in range(1, n):  # order-sensitive combination of the n token hashes
        h = (h * _K1) ^ th[k : k + m]
    h = _mix64(h)
    valid = tok_doc[:m] == tok_doc[n - 1 :]
    valid &= counts[tok_doc[:m]] >= max(cfg.min_tokens, n)
    h = h[valid]
    per_doc = np.bincount(tok_doc[:m][valid], minlength=n_docs)
    row_offsets = np.concatenate([[0], np.cumsum(per_doc)]).astype(np.uint64)
    return h, row_offsets


def signatures(contents: pa.Array, cfg: MinHashConfig) -> np.ndarray:
    """(documents x num_perm) uint32 MinHash signatures; documents without shingles get all MAX_HASH."""
    if len(contents) == 0:
        return np.zeros((0, cfg.num_perm), np.uint32)
    hashes, offsets = shingle_hashes(contents, cfg)
    matrix = rensa.RMinHash.digest_matrix_from_flat_token_hashes(hashes, offsets, cfg.num_perm, cfg.seed)
    sig = np.asarray(matrix.to_rows(), dtype=np.uint32).reshape(len(contents), cfg.num_perm)
    sig[np.diff(offsets.astype(np.int64)) == 0] = MAX_HASH
    return sig


def band_keys(sig: np.ndarray, cfg: MinHashConfig) -> np.ndarray:
    """(documents x bands) uint64: one key per band of ``rows`` values, distinct across bands.

    Two documents share a bucket iff their keys are equal; 64-bit keys make an accidental
    collision negligible (about n^2 / 2^65 over the whole corpus)."""
    n = sig.shape[0]
    keys = np.empty((n, cfg.bands), np.uint64)
    s = sig.astype(np.uint64)
    for b in range(cfg.bands):
        k = np.full(n, _mix64(np.array([b + 1], np.uint64))[0], np.uint64)
        for j in range(b * cfg.rows, (b + 1) * cfg.rows):
            k = _mix64(k ^ s[:, j])
        keys[:, b] = k
    return keys


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise fraction of equal MinHash values (the unbiased Jaccard estimate)."""
    return (a == b).mean(axis=-1)


def candidate_probability(j: float, cfg: MinHashConfig) -> float:
    """Chance that two documents of Jaccard ``j`` share at least one band."""
    return 1.0 - (1.0 - j**cfg.rows) ** cfg.bands


# --------------------------------------------------------------------------- reference
def seed_shingles(text: str, cfg: MinHashConfig = MinHashConfig()) -> set[str]:
    """The seed's shingle set, in plain Python: the reference for exact Jaccard in tests and benchmarks."""
    import re

    tokens = re.split(r"\W", text.lower())
    if len(tokens) < cfg.min_tokens:
        return set()
    n = cfg.ngram_size
    return {" ".join(tokens[i : i + n]) for i in range(max(len(tokens) - n + 1, 1))}


def exact_jaccard(a: str, b: str, cfg: MinHashConfig = MinHashConfig()) -> float:
    sa, sb = seed_shingles(a, cfg), seed_shingles(b, cfg)
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)
