"""One Parquet file written as results arrive, in row groups of bounded size.

The driver never holds a whole output: tables are buffered until ``row_group_bytes`` and
then written as one row group with ``pyarrow.parquet.ParquetWriter`` (the same writer and
options ``ray_tasks.tables.write_parquet_atomic`` uses, so an output that fits one row group
is byte-identical to writing the whole table at once). Atomicity comes from the caller
writing into a ``ray_tasks.tables.AtomicDir``: the file is complete before the folder gets
its final name.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ray_tasks.datasets import data_bytes


class ParquetStream:
    """``write(table)`` appends rows; ``close()`` writes what is buffered and the footer.

    ``empty_ok``: with no rows at all, still write a valid empty file (``False``: no file)."""

    def __init__(self, path: str | Path, schema: pa.Schema, row_group_bytes: int, empty_ok: bool = True):
        self.path, self.schema, self.row_group_bytes, self.empty_ok = Path(path), schema, row_group_bytes, empty_ok
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._writer: pq.ParquetWriter | None = None
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        self._buffer.append(table.cast(self.schema) if table.schema != self.schema else table)
        self._buffered += data_bytes(table)  # not nbytes: a table read back from disk must cut alike
        self.rows += table.num_rows
        if self._buffered >= self.row_group_bytes:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.path, self.schema, compression="zstd")
        # One contiguous row group; chunk boundaries would otherwise show in the page layout.
        self._writer.write_table(pa.concat_tables(self._buffer).combine_chunks(), row_group_size=None)
        self._buffer, self._buffered = [], 0

    def close(self) -> None:
        self._flush()
        if self._writer is not None:
            self._writer.close()
        elif self.empty_ok:
            pq.write_table(self.schema.empty_table(), self.path, compression="zstd")

    def __enter__(self) -> "ParquetStream":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif self._writer is not None:
            self._writer.close()
