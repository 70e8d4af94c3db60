"""Table contracts and atomic writes shared by every stage.

Why atomic: DVC hashes whatever lies at an output path, so an interrupted
stage must never leave a half-written file under the final name. Everything is
written to a temporary sibling, fsynced, then renamed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ray_tasks.datasets import MANIFEST, is_dataset, read_dataset, resolve

# Columns every files table carries, from ingest on (ray_tasks/ingest/__init__.py).
FILE_COLUMNS = ("repo_name", "path", "content", "length_bytes", "sha256")

REJECTED_SCHEMA = pa.schema(
    [
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("repo_name", pa.string()),
        ("path", pa.string()),
        ("length_bytes", pa.int64()),
        ("sha256", pa.string()),
        ("detail", pa.string()),
    ]
)


def rejected_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Build a rejected table; missing identifying fields become nulls."""
    cols = {f.name: [r.get(f.name) for r in rows] for f in REJECTED_SCHEMA}
    return pa.table(cols, schema=REJECTED_SCHEMA)


def rejected_from(table: pa.Table, stage: str, reasons: Iterable[str], detail: Iterable[str | None] | None = None) -> pa.Table:
    """Rejected rows for the given rows of a files table (same order as ``reasons``)."""
    reasons = list(reasons)
    detail = list(detail) if detail is not None else [None] * len(reasons)
    n = table.num_rows
    return pa.table(
        {
            "stage": pa.array([stage] * n, pa.string()),
            "reason": pa.array(reasons, pa.string()),
            "repo_name": table.column("repo_name").cast(pa.string()),
            "path": table.column("path").cast(pa.string()),
            "length_bytes": table.column("length_bytes").cast(pa.int64()),
            "sha256": table.column("sha256").cast(pa.string()),
            "detail": pa.array(detail, pa.string()),
        },
        schema=REJECTED_SCHEMA,
    )


def utf8_lengths(content: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """UTF-8 bytes of each string (int64; a null counts 0). Cast to large_binary first: plain
    ``binary_length`` of a string column counts bytes too, but overflows past 2 GB of offsets."""
    return pc.fill_null(pc.binary_length(pc.cast(content, pa.large_binary())), 0).cast(pa.int64())


def reason_counts(rejected: pa.Table) -> dict[str, int]:
    return dict(sorted(Counter(rejected.column("reason").to_pylist()).items()))


def write_parquet_atomic(table: pa.Table, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd")
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_json_atomic(obj: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


class AtomicDir:
    """Build a directory output under a temp name; it appears under its final name only on success.

        with AtomicDir("data/tokenize") as tmp:
            write files into tmp
    """

    def __init__(self, final: str | Path):
        self.final = Path(final)

    def __enter__(self) -> Path:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        # A killed run (SIGKILL runs no cleanup) leaves its temp folder; one stage writes one output
        # at a time (DVC's repo lock), so any such sibling is stale.
        for stale in self.final.parent.glob(f".{self.final.name}.*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.", suffix=".tmp", dir=self.final.parent.absolute()))
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        old = None
        if self.final.exists():
            old = self.final.with_name(f".{self.final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.final, old)
        os.replace(self.tmp, self.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def read_table(path: str | Path, required: Iterable[str] = FILE_COLUMNS, columns: Iterable[str] | None = None) -> pa.Table:
    """Read a Parquet file or a partitioned dataset folder (``ray_tasks.datasets``) whole, and fail
    clearly when it is broken, incomplete (a folder without a manifest) or lacks columns."""
    cols = list(columns) if columns is not None else None
    try:
        if is_dataset(path):
            table = read_dataset(path, columns=cols)
        else:
            fs, inner = resolve(path)
            if fs.get_file_info(inner).type == pafs.FileType.Directory:  # local or s3:// "folder"
                raise ValueError(f"{path}: not a complete dataset (a folder without {MANIFEST})")
            table = pq.read_table(inner, filesystem=fs, columns=cols)
    except (OSError, pa.ArrowInvalid) as exc:
        raise ValueError(f"{path}: not a readable Parquet file ({exc})") from exc
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: missing required columns {missing}")
    return table


def _fsync(path: str) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def content_bytes(table: pa.Table) -> int:
    """UTF-8 bytes of the ``content`` column: the size a stage's executor choice is made on."""
    if table.num_rows == 0:
        return 0
    return int(pc.sum(utf8_lengths(table.column("content"))).as_py() or 0)
