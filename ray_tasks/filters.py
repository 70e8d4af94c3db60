"""Curation filters in datatrove's style: each says keep, or drop with a reason.

A filter is a small object with ``name`` and ``__call__(batch) -> list[str | None]``
(None = keep, a string = the drop reason), vectorised over an Arrow batch.
``apply_filters`` runs a list of them and returns the batch annotated with
``language``, ``keep`` and ``reason``; the same function runs under Ray Data's
``map_batches`` and directly in tests, so both give identical results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ray_tasks.language import detect_language

# Languages exempt from the avg/max line-length rule (The Stack v2, §4): only
# their longest line is capped, at ``exempt_max_line_length``.
LINE_LENGTH_EXEMPT = {"HTML", "JSON", "Markdown", "Roff", "Roff Manpage", "SMT", "TeX", "Text", "XML"}


class Filter(Protocol):
    name: str

    def __call__(self, batch: pa.Table) -> list[str | None]: ...


@dataclass
class LicenseFilter:
    keep_types: Sequence[str]
    name: str = "license"

    def __call__(self, batch: pa.Table) -> list[str | None]:
        keep = set(self.keep_types)
        return [None if t in keep else f"license:{t}" for t in batch.column("license_type").to_pylist()]


@dataclass
class LanguageFilter:
    """Drops files no language claims (The Stack v2 keeps only classified files)."""

    name: str = "language"

    def __call__(self, batch: pa.Table) -> list[str | None]:
        return [None if lang else "unknown_language" for lang in batch.column("language").to_pylist()]


@dataclass
class LineLengthFilter:
    max_lines: int = 100_000
    max_avg_line_length: float = 100.0
    max_line_length: int = 1000
    exempt_max_line_length: int = 100_000
    name: str = "line_length"

    def __call__(self, batch: pa.Table) -> list[str | None]:
        out: list[str | None] = []
        for text, lang in zip(batch.column("content").to_pylist(), batch.column("language").to_pylist()):
            lengths = [len(line) for line in text.split("\n")]
            longest = max(lengths)
            if len(lengths) > self.max_lines:
                out.append("too_many_lines")
            elif lang in LINE_LENGTH_EXEMPT:
                out.append("max_line_length" if longest > self.exempt_max_line_length else None)
            elif longest > self.max_line_length:
                out.append("max_line_length")
            elif sum(lengths) / len(lengths) > self.max_avg_line_length:
                out.append("avg_line_length")
            else:
                out.append(None)
        return out


@dataclass
class AlphaFilter:
    min_alpha_fraction: float = 0.25
    name: str = "alpha"

    def __call__(self, batch: pa.Table) -> list[str | None]:
        content = batch.column("content")
        n_chars = pc.utf8_length(content).to_numpy(zero_copy_only=False).astype(np.float64)
        # Count alphabetic code points by removing them and measuring what is left.
        non_alpha = pc.utf8_length(pc.replace_substring_regex(content, r"\p{L}", "")).to_numpy(zero_copy_only=False)
        alpha = n_chars - non_alpha
        frac = np.divide(alpha, n_chars, out=np.zeros_like(alpha), where=n_chars > 0)
        return [None if f >= self.min_alpha_fraction else "alpha_fraction" for f in frac]


def add_language(batch: pa.Table) -> pa.Table:
    langs = [detect_language(p) for p in batch.column("path").to_pylist()]
    return _set_column(batch, "language", pa.array(langs, pa.string()))


def apply_filters(batch: pa.Table, filters: Sequence[Filter]) -> pa.Table:
    """Annotate a batch with ``language``, ``keep`` and the first failing filter's ``reason``."""
    batch = add_language(batch)
    reasons: list[str | None] = [None] * batch.num_rows
    for f in filters:
        pending = [i for i, r in enumerate(reasons) if r is None]
        if not pending:
            break
        verdicts = f(batch.take(pending))
        for i, verdict in zip(pending, verdicts):
            reasons[i] = verdict
    batch = _set_column(batch, "reason", pa.array(reasons, pa.string()))
    return _set_column(batch, "keep", pa.array([r is None for r in reasons], pa.bool_()))


def _set_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, values)
    return table.append_column(name, values)
