"""Build ``data/attribution`` from the curated files: the portrait's segments, the full-text index,
the files table and the manifest. Read in bounded batches (``batch_rows``); one pass counts the
windows (a Bloom filter is sized before its first insert), one inserts them and indexes the rows.

Incremental: when the previous output was built with the same window settings and every file it
indexed is still in the set, it is reused (hard links) and only the new files are indexed, as one
new segment; otherwise (a file left the set, which a Bloom filter cannot forget) it is rebuilt.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ray_tasks.attribution import fulltext, portrait
from ray_tasks.attribution.params import AttributionParams
from ray_tasks.datasets import is_dataset, open_part, part_paths

MANIFEST = "manifest.json"
FILES = "files.parquet"
PORTRAIT = "portrait"
FULLTEXT = "fulltext"
KEY = ("repo_name", "path", "sha256")
META = ("repo_name", "path", "sha256", "license_type", "detected_licenses", "length_bytes")
WINDOW_SETTINGS = ("window_chars", "stride_chars", "false_positive_rate")
"""Settings that shape the stored index: a change rebuilds it (the query settings do not)."""


def build(files_path: Path, out: Path, params: AttributionParams, previous: Path | None = None,
          data_version: str | None = None) -> dict:
    """Index ``files_path`` into ``out`` (an empty folder); reuse ``previous`` when it can be extended."""
    start = time.perf_counter()
    source = FilesSource(files_path)
    missing = [c for c in (*KEY, "content", "length_bytes") if c not in source.schema_arrow.names]
    if missing:
        raise ValueError(f"{files_path}: missing required columns {missing}")
    meta = _meta(source)
    old = _reusable(previous, params, meta)
    if old is None:
        segments, old_meta, new = [], None, np.ones(meta.num_rows, dtype=bool)
        index = fulltext.create(out / FULLTEXT)
    else:
        manifest, old_meta = old
        _link_tree(previous, out)
        segments = manifest["segments"]
        new = ~np.isin(_keys(meta), _keys(old_meta))
        index = fulltext.open_index(out / FULLTEXT)
    segment = len(segments)
    if new.any():
        segments.append(_add_segment(source, new, out, segment, params, index))
    segment_col = np.full(meta.num_rows, -1, dtype=np.int64)
    segment_col[new] = segment
    if old_meta is not None:
        where = dict(zip(_keys(old_meta), old_meta.column("segment").to_pylist()))
        keys = _keys(meta)
        for i in np.flatnonzero(~new):
            segment_col[i] = where[keys[i]]
    files = meta.append_column("segment", pa.array(segment_col))
    pq.write_table(files, out / FILES, compression="zstd")
    stats = _stats(out, files, segments, params, data_version, time.perf_counter() - start,
                   added=int(new.sum()), reused=old is not None)
    (out / MANIFEST).write_text(json.dumps({**stats, "segments": segments,
                                            "settings": params.model_dump(include=set(WINDOW_SETTINGS))},
                                           indent=2, sort_keys=True) + "\n")
    return stats


class FilesSource:
    """The curated files, one Parquet file or a partitioned dataset (``ray_tasks/datasets.py``), read
    part by part: the few ``pq.ParquetFile`` calls the index build needs, over every part in order."""

    def __init__(self, path: str | Path):
        paths = part_paths(path) if is_dataset(path) else [str(path)]
        self.parts = [open_part(p) for p in paths]
        self.schema_arrow = self.parts[0].schema_arrow

    def read(self, columns: list[str]) -> pa.Table:
        return pa.concat_tables([part.read(columns=columns) for part in self.parts])

    def iter_batches(self, batch_size: int, columns: list[str]):
        for part in self.parts:
            yield from part.iter_batches(batch_size=batch_size, columns=columns)


def _meta(source: FilesSource) -> pa.Table:
    names = [c for c in META if c in source.schema_arrow.names]
    table = source.read(columns=names)
    for name, kind in (("license_type", pa.string()), ("detected_licenses", pa.list_(pa.string()))):
        if name not in names:  # a source without the column: the trace reports it as unknown
            table = table.append_column(name, pa.nulls(table.num_rows, kind))
    return table.select(list(META))


def _keys(table: pa.Table) -> np.ndarray:
    cols = [table.column(k).to_pylist() for k in KEY]
    return np.array(["\x00".join(str(v) for v in row) for row in zip(*cols)], dtype=object)


def _reusable(previous: Path | None, params: AttributionParams, meta: pa.Table) -> tuple[dict, pa.Table] | None:
    """The previous manifest and files table, if the new set only adds files to it."""
    if previous is None or not params.incremental or not (previous / MANIFEST).exists():
        return None
    manifest = json.loads((previous / MANIFEST).read_text())
    if manifest.get("settings") != params.model_dump(include=set(WINDOW_SETTINGS)):
        return None
    old_meta = pq.read_table(previous / FILES)
    if not np.isin(_keys(old_meta), _keys(meta)).all():
        return None
    return manifest, old_meta


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link the previous output's files (segments are never rewritten), copying across devices."""
    for path in src.rglob("*"):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.name not in (MANIFEST, FILES):
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, target)
            except OSError:
                shutil.copy2(path, target)
    # tantivy rewrites meta.json in place on commit: give the new index its own copy
    meta_json = dst / FULLTEXT / "meta.json"
    if meta_json.exists():
        data = meta_json.read_bytes()
        meta_json.unlink()
        meta_json.write_bytes(data)


def _add_segment(source: FilesSource, new: np.ndarray, out: Path, segment: int,
                 params: AttributionParams, index) -> dict:
    """One Bloom filter and one tantivy commit for the rows flagged ``new``."""
    width, stride = params.window_chars, params.stride_chars
    columns = [c for c in ("repo_name", "path", "sha256", "license_type", "detected_licenses", "content")
               if c in source.schema_arrow.names]
    n_windows = sum(portrait.window_count(batch.column("content"), width, stride)
                    for batch in _new_batches(source, new, ["content"], params.batch_rows))
    bloom = portrait.new_filter(n_windows, params.false_positive_rate)

    def rows():  # each batch feeds the filter, then the full-text writer
        for batch in _new_batches(source, new, columns, params.batch_rows):
            for text in batch.column("content").to_pylist():
                bloom.update(portrait.indexed_windows(text or "", width, stride))
            yield batch.to_pylist()

    fulltext.add_rows(index, rows(), segment, params.writer_heap_mb)
    name = f"{PORTRAIT}/segment-{segment:05d}.bloom"
    (out / PORTRAIT).mkdir(parents=True, exist_ok=True)
    bloom.save(str(out / name))
    return {"portrait": name, "files": int(new.sum()), "windows": n_windows}


def _new_batches(source: FilesSource, new: np.ndarray, columns: list[str], batch_rows: int):
    offset = 0
    for batch in source.iter_batches(batch_size=batch_rows, columns=columns):
        mask = new[offset:offset + batch.num_rows]
        offset += batch.num_rows
        if mask.any():
            yield batch.filter(pa.array(mask))


def _stats(out: Path, files: pa.Table, segments: list[dict], params: AttributionParams, data_version: str | None,
           seconds: float, added: int, reused: bool) -> dict:
    content_bytes = int(np.nansum(files.column("length_bytes").to_numpy(zero_copy_only=False)))
    portrait_bytes, fulltext_bytes = _size(out / PORTRAIT), _size(out / FULLTEXT)
    return {
        "files": files.num_rows, "files_added": added, "incremental": reused,
        "repositories": len(set(files.column("repo_name").to_pylist())),
        "windows": sum(s["windows"] for s in segments), "segments": len(segments),
        "content_bytes": content_bytes, "portrait_bytes": portrait_bytes, "fulltext_bytes": fulltext_bytes,
        "index_to_data_ratio": round((portrait_bytes + fulltext_bytes) / content_bytes, 4) if content_bytes else None,
        "build_s": round(seconds, 3), "false_positive_rate": params.false_positive_rate,
        "data_version": data_version,
    }


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
