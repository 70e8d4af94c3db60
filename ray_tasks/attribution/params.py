"""Parameters of the attribution stage (``params.yaml: attribution``): the portrait and the full-text index."""

from __future__ import annotations

from pydantic import Field, model_validator

from ray_tasks.params import StageParams


class AttributionParams(StageParams):
    """How the training set is indexed for ``starflow trace`` and the memorisation metric (ray_tasks/attribution/)."""

    window_chars: int = Field(default=50, ge=8)
    """Characters per hashed window of the portrait (Data Portraits, https://arxiv.org/abs/2303.03919: 50)."""
    stride_chars: int = Field(default=50, ge=1)
    """Step between indexed windows (at most ``window_chars``); a verbatim copy of ``window_chars +
    stride_chars - 1`` characters or more always holds one indexed window (queries test every offset)."""
    false_positive_rate: float = Field(default=0.001, gt=0, lt=0.5)
    """Configured false-positive rate of the portrait's Bloom filter, per window looked up."""
    min_span_chars: int = Field(default=100, ge=1)
    """A span is reported only when this many characters of it are found verbatim in one training file."""
    max_candidates: int = Field(default=10, ge=1)
    """Training files the full-text index returns (BM25 order) per span, to verify verbatim."""
    top_files: int = Field(default=5, ge=1)
    """Best matching files a trace reports."""
    writer_heap_mb: int = Field(default=128, ge=15)
    """Memory of tantivy's index writer, shared by its threads (15 MB each at least); bounds the build's RSS."""
    batch_rows: int = Field(default=2000, ge=1)
    """Rows of the curated table read at a time while building."""
    incremental: bool = True
    """Reuse the previous ``data/attribution`` when the new set only adds files: one new segment per batch."""

    @model_validator(mode="after")
    def _stride_within_window(self) -> "AttributionParams":
        if self.stride_chars > self.window_chars:
            raise ValueError(f"stride_chars ({self.stride_chars}) must not exceed window_chars ({self.window_chars}): "
                             "windows would leave gaps that no query can find")
        return self
