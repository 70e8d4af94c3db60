"""The dedup stage's input as row groups of Parquet files: read by columns or by row group, never whole.

The driver reads only the small columns (names, paths, hashes, ranking columns); the content
is read by the map tasks, each from the row groups that hold its rows, and by the writer of
the kept rows, one row group at a time. Peak memory therefore follows the size of a row
group (bounded by whoever wrote the file: ``ray_tasks/ingest`` writes bounded row groups),
not the size of the corpus.

Rows are numbered globally across the files, in file order, then row order: the same
numbering as the concatenated table the stage used to read, so ids, batches and outputs do
not depend on how the input is cut into files or row groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ray_tasks.datasets import open_part, part_paths

REQUIRED_COLUMNS = ("repo_name", "path", "content")


@dataclass(frozen=True)
class ParquetSource:
    """Parquet files read as one table; picklable, so a Ray task receives it and reads its own rows."""

    files: tuple[str, ...]
    schema: pa.Schema
    """The files' schemas unified (a column missing from one file reads as nulls there)."""
    group_file: np.ndarray
    """Per row group: index of its file."""
    group_index: np.ndarray
    """Per row group: its index within the file."""
    group_start: np.ndarray
    """Per row group: global row number of its first row; one more entry holds the row count."""

    @classmethod
    def open(cls, paths: Sequence[str | Path], required: Sequence[str] = REQUIRED_COLUMNS) -> "ParquetSource":
        """The files as one source; fails naming the file when one is unreadable or lacks a ``required`` column."""
        files, schemas, gfile, gindex, sizes = [], [], [], [], []
        for k, path in enumerate(paths):
            path = _address(path)
            meta = _footer(path)
            schema = meta.schema.to_arrow_schema().remove_metadata()
            if missing := [c for c in required if c not in schema.names]:
                raise ValueError(f"{path}: missing required columns {missing} (need {list(required)})")
            files.append(path)
            schemas.append(schema)
            for g in range(meta.num_row_groups):
                gfile.append(k)
                gindex.append(g)
                sizes.append(meta.row_group(g).num_rows)
        if not files:
            raise ValueError("no Parquet files to deduplicate")
        return cls(tuple(files), pa.unify_schemas(schemas), np.array(gfile, np.int64), np.array(gindex, np.int64),
                   np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]))

    @property
    def num_rows(self) -> int:
        return int(self.group_start[-1])

    @property
    def num_groups(self) -> int:
        return len(self.group_file)

    def has(self, column: str) -> bool:
        return column in self.schema.names

    def content_bytes(self) -> int:
        """Uncompressed size of the ``content`` column from the file footers (no data read): what
        the executor choice is made on."""
        total = 0
        for path in self.files:
            meta = open_part(path).metadata
            col = meta.schema.names.index("content")
            total += sum(meta.row_group(g).column(col).total_uncompressed_size for g in range(meta.num_row_groups))
        return total

    def read_group(self, g: int, columns: Sequence[str] | None = None) -> pa.Table:
        """Row group ``g`` (global number), the requested columns, in the unified schema."""
        names = list(columns) if columns is not None else self.schema.names
        fh = open_part(self.files[self.group_file[g]])
        have = [c for c in names if c in fh.schema_arrow.names]
        part = fh.read_row_group(int(self.group_index[g]), columns=have)
        n = part.num_rows
        cols = [part.column(c) if c in have else pa.nulls(n, self.schema.field(c).type) for c in names]
        return pa.table(cols, schema=pa.schema([self.schema.field(c) for c in names]))

    def read_columns(self, columns: Sequence[str]) -> pa.Table:
        """Whole columns over every row group (only small ones: the driver never reads ``content``)."""
        return pa.concat_tables([self.read_group(g, columns) for g in range(self.num_groups)])

    def groups_of(self, rows: np.ndarray) -> np.ndarray:
        """Row group of each (global) row."""
        return np.searchsorted(self.group_start, rows, side="right") - 1

    def read_rows(self, rows: np.ndarray, column: str, groups_read: dict[int, pa.ChunkedArray] | None = None) -> pa.Array:
        """One column at the given ascending global rows, reading only the row groups that hold them.

        ``groups_read`` keeps the columns read for the groups of the last call, so that consecutive
        calls with ascending rows read each row group once and hold at most the groups of one call."""
        groups = self.groups_of(rows)
        cache = groups_read if groups_read is not None else {}
        needed = set(np.unique(groups).tolist())
        for g in [g for g in cache if g not in needed]:
            del cache[g]
        parts = []
        for g in sorted(needed):
            if g not in cache:
                cache[g] = self.read_group(g, [column]).column(0)
            local = rows[groups == g] - self.group_start[g]
            parts.append(cache[g].take(pa.array(local, pa.int64())).combine_chunks())
        if not parts:
            return pa.array([], self.schema.field(column).type)
        return pa.concat_arrays(parts) if len(parts) > 1 else parts[0]

    def iter_groups(self, columns: Sequence[str] | None = None) -> Iterator[tuple[int, pa.Table]]:
        """(first global row, table) of each row group in order: the kept rows' writer reads this way."""
        for g in range(self.num_groups):
            yield int(self.group_start[g]), self.read_group(g, columns)


    def file_rows(self, k: int) -> tuple[int, int]:
        """(first global row, end) of file ``k``: a part-aligned output writes these rows as its part k."""
        lo, hi = np.searchsorted(self.group_file, [k, k + 1])  # group_file ascends: files in order
        return int(self.group_start[lo]), int(self.group_start[hi])

    def file_groups(self, k: int) -> range:
        """Global numbers of file ``k``'s row groups."""
        lo, hi = np.searchsorted(self.group_file, [k, k + 1])
        return range(int(lo), int(hi))


def open_dataset(root: str | Path, required: Sequence[str] = REQUIRED_COLUMNS) -> "ParquetSource":
    """A partitioned dataset (``ray_tasks/datasets.py``: its manifest's parts, in order) as a source."""
    return ParquetSource.open(part_paths(root), required=required)


def _address(path: str | Path) -> str:
    """An absolute local path (Ray workers may run in another folder), or the URI as given."""
    text = str(path)
    return text if "://" in text else str(Path(text).resolve())


def _footer(path: str) -> pq.FileMetaData:
    """A Parquet file's footer (schema, row groups): the only part read when a source is opened."""
    try:
        return open_part(path).metadata
    except (OSError, pa.ArrowInvalid) as exc:
        raise ValueError(f"{path}: not a readable Parquet file ({exc})") from exc
