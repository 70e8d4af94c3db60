"""Parameters of the dedup stage (``params.yaml: dedup``): the seed's exact and MinHash near-dedup."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ray_tasks.params import StageParams

SIGNATURE_FIELDS = ("ngram_size", "num_perm", "bands", "rows", "threshold", "seed", "min_tokens")
"""The fields that decide signatures, band keys and verified edges: an index records them and
refuses a batch hashed with other values (the others only cut the work into tasks)."""


class DedupParams(StageParams):
    """Exact and MinHash near-dedup, as in the seed (https://github.com/bigcode-project/bigcode-dataset/blob/main/near_deduplication/bigcode-v2/intra_dedup.py)."""

    hash: Literal["sha256"] = "sha256"
    """Content hash used for exact deduplication (files, and repositories by their file tree)."""
    ngram_size: int = Field(default=5, gt=0)
    """Word n-gram size of the shingles (lowercased text split on Unicode \\W)."""
    min_tokens: int = Field(default=5, ge=0)
    """Documents with fewer tokens get no shingles (they all collapse into one cluster, as in the seed)."""
    num_perm: int = Field(default=250, gt=0)
    """MinHash permutations per signature."""
    bands: int = Field(default=25, gt=0)
    """LSH bands; two documents are candidates when one band of ``rows`` values matches."""
    rows: int = Field(default=10, gt=0)
    """Signature values per band (bands * rows <= num_perm)."""
    threshold: float = Field(default=0.7, gt=0, le=1)
    """Candidates are linked only if their signatures estimate a Jaccard similarity of at least this."""
    seed: int = 42
    """Seed of the MinHash permutations (an index only accepts batches hashed with the same seed)."""
    batch_size: int = Field(default=4000, gt=0)
    """At most this many documents per signature task."""
    batch_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    """About this many bytes of content per signature task: it bounds a task's memory (the shingling
    holds a few arrays of the batch's size), and 8 MB ran 1.25x faster than 2 MB on a 100k-file
    corpus, with or without Ray (fewer tasks and object-store round trips)."""
    num_partitions: int = Field(default=4, gt=0)
    """Partitions of the band-bucket shuffle (one reduce task each); fixed for the life of an index."""

    @model_validator(mode="after")
    def _bands_fit(self) -> "DedupParams":
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands * rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        return self

    def signature_config(self) -> dict:
        """The values an index is built with (``meta.json: config``), compared on every update."""
        return self.model_dump(include=set(SIGNATURE_FIELDS))
