"""Curation steps in datatrove's style: annotate a batch, then each filter says keep, or drop with a reason.

A filter is a small object with ``name`` and ``__call__(batch) -> list[str | None]``
(None = keep, a string = the drop reason), vectorised over an Arrow batch that
``annotate`` has already given ``language``, ``is_vendor``, ``is_generated`` and
The Stack v2's per-file statistics (``alpha_fraction``, ``alphanum_fraction``,
``num_lines``, ``avg_line_length``, ``max_line_length``). ``apply_filters`` runs a
list of them and returns the batch with ``keep`` and the first failing filter's
``reason``; ``executor.map_batches`` runs the same function over the same batches on
Ray or in this process (ray_tasks/executor.py), so both give identical results.

A filter's thresholds are required fields: their values (and defaults) are
``curate.quality`` in params.yaml (``QualityParams``, ray_tasks/curate/params.py),
and ``build_filters`` (ray_tasks/curate/stage.py) hands them over, the per-language lists
too (linguist's names, checked against go-enry when the params load; the StarCoder2 paper,
https://arxiv.org/abs/2402.19173, §2.1 "Basic filters" and "Language-specific filters").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import PurePosixPath
from typing import Protocol, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ray_tasks.language import content_bytes, detect_language
from ray_tasks.curate.provenance import has_generated_marker, is_generated, is_vendor

ENCODED_PATTERNS = {
    "base64": r"[a-zA-Z0-9+/\n=]{64,}",
    "hex": r"(?:\b(?:0x|\\x)?[0-9a-fA-F]{2}(?:,|\b\s*)){8,}",
    "unicode": r"(?:\\u[0-9a-fA-F]{4}){8,}",
}


class Filter(Protocol):
    name: str

    def __call__(self, batch: pa.Table) -> list[str | None]: ...


# --------------------------------------------------------------------------- annotate
def annotate(batch: pa.Table) -> pa.Table:
    """Add language, vendor/generated flags and line/character statistics to a files batch."""
    paths = batch.column("path").to_pylist()
    contents = batch.column("content").to_pylist()
    given = batch.column("language").to_pylist() if "language" in batch.column_names else [None] * len(paths)
    data = [content_bytes(c) for c in contents]  # encoded once for both go-enry calls
    langs = [g or detect_language(p, d) for g, p, d in zip(given, paths, data)]
    batch = set_column(batch, "language", pa.array(langs, pa.string()))
    batch = set_column(batch, "is_vendor", pa.array([is_vendor(p) for p in paths], pa.bool_()))
    batch = set_column(batch, "is_generated", pa.array([is_generated(p, d) for p, d in zip(paths, data)], pa.bool_()))
    for name, values in text_stats(batch.column("content")).items():
        batch = set_column(batch, name, values)
    return batch


def text_stats(content: pa.ChunkedArray | pa.Array) -> dict[str, pa.Array]:
    """Per-file statistics, vectorised over the whole batch (no Python loop over characters or lines)."""
    content = content.combine_chunks() if isinstance(content, pa.ChunkedArray) else content
    n_chars = pc.utf8_length(content).to_numpy(zero_copy_only=False).astype(np.int64)
    alpha, alnum = char_class_counts(content.to_pylist(), n_chars)
    lines = pc.split_pattern(content, "\n")
    offsets = lines.offsets.to_numpy()
    n_lines = np.diff(offsets)
    line_lengths = pc.utf8_length(pc.list_flatten(lines)).to_numpy(zero_copy_only=False)
    starts = offsets[:-1] - offsets[0]
    max_len = np.maximum.reduceat(line_lengths, starts) if len(line_lengths) else np.zeros(len(n_lines), np.int64)
    # Newlines are not part of any line: average = (chars - newlines) / lines, as a split gives.
    avg = (n_chars - (n_lines - 1)) / np.maximum(n_lines, 1)
    safe = np.maximum(n_chars, 1)
    return {
        "alpha_fraction": pa.array(np.where(n_chars > 0, alpha / safe, 0.0)),
        "alphanum_fraction": pa.array(np.where(n_chars > 0, alnum / safe, 0.0)),
        "num_lines": pa.array(n_lines.astype(np.int64)),
        "avg_line_length": pa.array(avg),
        "max_line_length": pa.array(max_len.astype(np.int64)),
    }


@lru_cache(maxsize=1)
def _char_tables() -> tuple[np.ndarray, np.ndarray]:
    """isalpha / isalnum for every Unicode code point, looked up instead of asked per character."""
    chars = (chr(i) for i in range(0x110000))
    alpha = np.fromiter((c.isalpha() for c in chars), dtype=np.bool_, count=0x110000)
    alnum = alpha | np.fromiter((chr(i).isalnum() for i in range(0x110000)), dtype=np.bool_, count=0x110000)
    return alpha, alnum


def char_class_counts(texts: list[str], n_chars: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(alphabetic, alphanumeric) character counts per text: one UTF-32 buffer, two table lookups."""
    alpha_t, alnum_t = _char_tables()
    if not texts or n_chars.sum() == 0:
        return np.zeros(len(texts), np.int64), np.zeros(len(texts), np.int64)
    codes = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    bounds = np.concatenate([[0], np.cumsum(n_chars)])
    cum_alpha = np.concatenate([[0], np.cumsum(alpha_t[codes], dtype=np.int64)])
    cum_alnum = np.concatenate([[0], np.cumsum(alnum_t[codes], dtype=np.int64)])
    return np.diff(cum_alpha[bounds]), np.diff(cum_alnum[bounds])


# --------------------------------------------------------------------------- filters
@dataclass
class LicenseFilter:
    """Only the kept license classes pass (``permissive``, ``no_license``, ``non_permissive``)."""

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
class VendorFilter:
    """Drops files linguist would call vendored (``is_vendor``)."""

    name: str = "vendor"

    def __call__(self, batch: pa.Table) -> list[str | None]:
        return ["vendor" if v else None for v in batch.column("is_vendor").to_pylist()]


@dataclass
class LineLengthFilter:
    """Too many lines, too long a line, too long an average line; some languages cap only the longest."""

    max_lines: int
    max_avg_line_length: float
    max_line_length: int
    exempt_max_line_length: int
    exempt_languages: Sequence[str]
    name: str = "line_length"

    def __call__(self, batch: pa.Table) -> list[str | None]:
        exempt = set(self.exempt_languages)
        out: list[str | None] = []
        for lang, n, avg, longest in zip(*(batch.column(c).to_pylist() for c in ("language", "num_lines", "avg_line_length", "max_line_length"))):
            if n > self.max_lines:
                out.append("too_many_lines")
            elif lang in exempt:
                out.append("max_line_length" if longest > self.exempt_max_line_length else None)
            elif longest > self.max_line_length:
                out.append("max_line_length")
            elif avg > self.max_avg_line_length:
                out.append("avg_line_length")
            else:
                out.append(None)
        return out


@dataclass
class AutogeneratedFilter:
    """linguist's ``is_generated`` or a marker ("auto-generated", ...) in the first lines."""

    head_lines: int
    name: str = "autogenerated"

    def __call__(self, batch: pa.Table) -> list[str | None]:
        flags = batch.column("is_generated").to_pylist()
        contents = batch.column("content").to_pylist()
        return ["autogenerated" if g or has_generated_marker(c, self.head_lines) else None for g, c in zip(flags, contents)]


@dataclass
class AlphaFilter:
    """Too few alphabetic characters (alphanumeric for the assembly-like languages)."""

    min_alpha_fraction: float
    alphanum_languages: Sequence[str]
    name: str = "alpha"

    def __call__(self, batch: pa.Table) -> list[str | None]:
        use_alnum = set(self.alphanum_languages)
        rows = zip(batch.column("language").to_pylist(), batch.column("alpha_fraction").to_pylist(),
                   batch.column("alphanum_fraction").to_pylist())
        return [None if (alnum if lang in use_alnum else alpha) >= self.min_alpha_fraction else "alpha_fraction"
                for lang, alpha, alnum in rows]


@dataclass
class EncodedDataFilter:
    """Base64 / hex / unicode-escape blobs: one match over ``max_match_chars`` or over ``max_fraction`` of the file.

    Fast path: Arrow's RE2 removes every match of a pattern from the whole batch
    at once, so the characters it covered are a length difference. Only files
    where a pattern covered more than ``max_match_chars`` in total can hold one
    long match; those alone are scanned match by match (same leftmost-first
    semantics in RE2 and Python's re, so the verdicts equal a per-file scan).
    """

    max_match_chars: int
    max_fraction: float
    name: str = "encoded_data"

    def __call__(self, batch: pa.Table) -> list[str | None]:
        content = batch.column("content").combine_chunks()
        n_chars = pc.utf8_length(content).to_numpy(zero_copy_only=False).astype(np.int64)
        covered = {kind: n_chars - pc.utf8_length(pc.replace_substring_regex(content, pattern, "")).to_numpy(
            zero_copy_only=False) for kind, pattern in ENCODED_PATTERNS.items()}
        out: list[str | None] = []
        for i in range(len(n_chars)):
            reason = None
            for kind in ENCODED_PATTERNS:
                if covered[kind][i] > self.max_match_chars:
                    if _longest_match(kind, content[i].as_py()) > self.max_match_chars:
                        reason = f"encoded_data:{kind}"
                        break
            if reason is None and sum(covered[k][i] for k in ENCODED_PATTERNS) > self.max_fraction * n_chars[i]:
                reason = "encoded_data:fraction"
            out.append(reason)
        return out


@lru_cache(maxsize=None)
def _compiled(kind: str) -> re.Pattern[str]:
    return re.compile(ENCODED_PATTERNS[kind])


def _longest_match(kind: str, text: str) -> int:
    return max((m.end() - m.start() for m in _compiled(kind).finditer(text)), default=0)


@dataclass
class DataSizeFilter:
    """Files of data-like ``languages`` (Text, JSON, YAML, OWL, DOT) longer than ``max_lines`` lines are data, not code."""

    max_lines: int
    languages: Sequence[str]
    name: str = "data_size"

    def __call__(self, batch: pa.Table) -> list[str | None]:
        capped = set(self.languages)
        return ["data_too_long" if lang in capped and n > self.max_lines else None
                for lang, n in zip(batch.column("language").to_pylist(), batch.column("num_lines").to_pylist())]


@dataclass
class TextNameFilter:
    """Plain-text files (``languages``) are kept only when they are requirements, READMEs, notes, TODOs..."""

    stems: Sequence[str]
    languages: Sequence[str]
    name: str = "text_name"

    def __call__(self, batch: pa.Table) -> list[str | None]:
        stems, text = set(self.stems), set(self.languages)
        out: list[str | None] = []
        for lang, path in zip(batch.column("language").to_pylist(), batch.column("path").to_pylist()):
            fname = PurePosixPath(path).name.lower()
            ok = lang not in text or "requirement" in fname or PurePosixPath(fname).stem in stems
            out.append(None if ok else "text_filename")
        return out


@dataclass
class HtmlFilter:
    """HTML is kept only with enough visible text: ``min_text_chars`` and ``min_text_fraction`` of the file."""

    min_text_chars: int
    min_text_fraction: float
    name: str = "html"

    def __call__(self, batch: pa.Table) -> list[str | None]:
        return [self._check(text) if lang == "HTML" else None
                for lang, text in zip(batch.column("language").to_pylist(), batch.column("content").to_pylist())]

    def _check(self, html: str) -> str | None:
        from bs4 import BeautifulSoup

        soup = BeautifulSoup(html, "html.parser")
        for tag in soup(["script", "style"]):
            tag.decompose()
        text = soup.get_text()
        if len(text) < self.min_text_chars:
            return "html_visible_text"
        return None if len(text) >= self.min_text_fraction * max(len(html), 1) else "html_visible_text"


# --------------------------------------------------------------------------- run
def apply_filters(batch: pa.Table, filters: Sequence[Filter]) -> pa.Table:
    """Annotate a batch, then add ``keep`` and the first failing filter's ``reason``."""
    batch = annotate(batch)
    reasons: list[str | None] = [None] * batch.num_rows
    for f in filters:
        pending = [i for i, r in enumerate(reasons) if r is None]
        if not pending:
            break
        verdicts = f(batch.take(pending))
        for i, verdict in zip(pending, verdicts):
            reasons[i] = verdict
    batch = set_column(batch, "reason", pa.array(reasons, pa.string()))
    return set_column(batch, "keep", pa.array([r is None for r in reasons], pa.bool_()))


def set_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    """``table`` with column ``name`` replaced in place, or appended when it is new."""
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, values)
    return table.append_column(name, values)
