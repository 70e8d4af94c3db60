"""The curate stage's per-repository cache: a part whose input changed costs only its new or
changed repositories.

A part (ray_tasks/curate/parts.py) is read batch by batch as before; its rows are grouped into
repositories (a run of rows with one ``repo_name``: a repository never spans parts and its files
are contiguous in one, so a run is the repository; rows interleaved otherwise make more, smaller
units, still correct). Each repository is one unit: its results (``stage.curate_rows``: a row
per file, what the costly steps said) are kept in ``RepoStore`` under a key that digests its rows
(every column, content included, by value: ``rows_digest``) and what every result depends on
besides (the part key's params, code and malware/benchmark digest). A unit found there is not
curated again; a missing one is curated whole and stored. Each batch is then rebuilt from its
rows' results (``stage.replay``): the same tables, account and in-memory layout the batch's
``curate_table`` gives, so the part's output, row groups included, is byte for byte a cold run's.

    for batch, rows in batches_with_results(part.iter_batches(...), resolve, cfg.batch_size):
        curated = replay(batch, rows, steps, cfg)

Repositories are resolved a few at a time (about a batch of rows, or one bigger repository), and
the missing ones curated together (``curate_rows`` on their rows at once, the results cut back
per repository): a call per one-file repository would cost more than its file. Memory: the
batches the repositories being resolved span (one or two for most; a huge repository's rows, one
at a time) and their results (a few small columns per file, the redacted content only where
redaction changed it).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import deque
from itertools import groupby
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

REPO = "repo_name"
SUFFIX = ".arrow"
Resolve = Callable[[list[pa.Table]], list[pa.Table]]
"""Repositories' rows in, their results out (one row per file each), in order."""


# --------------------------------------------------------------------------- units
def batches_with_results(batches: Iterable[pa.RecordBatch], resolve: Resolve, group_rows: int
                         ) -> Iterator[tuple[pa.Table, pa.Table]]:
    """Each (non-empty) batch with its files' rows of results, in order. The rows are grouped into
    repositories, handed whole to ``resolve`` once they end, a group of about ``group_rows`` rows
    at a time; a batch comes out once every repository touching it is resolved."""
    pending: deque[pa.Table] = deque()
    results = _Rows()
    closed = _Closed(resolve, group_rows, results)
    unit: list[pa.Table] = []
    name: object = object()  # no repository open yet (None is a name: rows without one)
    for record_batch in batches:
        if record_batch.num_rows == 0:  # nothing to curate; its account would add nothing either
            continue
        batch = pa.Table.from_batches([record_batch])
        pending.append(batch)
        start = 0
        for repo, run in groupby(batch.column(REPO).to_pylist()):
            n = sum(1 for _ in run)
            if unit and repo != name:
                closed.add(pa.concat_tables(unit))
                unit = []
            name = repo
            unit.append(batch.slice(start, n))
            start += n
        yield from _ready(pending, results)
    if unit:
        closed.add(pa.concat_tables(unit))
    closed.flush()
    yield from _ready(pending, results)
    if pending:
        raise AssertionError("curate: batches left without results")  # cannot happen: every row is in a unit


class _Closed:
    """Repositories that ended, resolved together once they hold ``group_rows`` rows."""

    def __init__(self, resolve: Resolve, group_rows: int, results: "_Rows"):
        self.resolve, self.group_rows, self.results = resolve, group_rows, results
        self.units: list[pa.Table] = []
        self.rows = 0

    def add(self, unit: pa.Table) -> None:
        self.units.append(unit)
        self.rows += unit.num_rows
        if self.rows >= self.group_rows:
            self.flush()

    def flush(self) -> None:
        if not self.units:
            return
        out = self.resolve(self.units)
        for unit, rows in zip(self.units, out, strict=True):
            if rows.num_rows != unit.num_rows:
                raise ValueError(f"curate: {rows.num_rows} rows of results for {unit.num_rows} files of one repository")
            self.results.add(rows)
        self.units, self.rows = [], 0


def _ready(pending: deque[pa.Table], results: "_Rows") -> Iterator[tuple[pa.Table, pa.Table]]:
    while pending and results.rows >= pending[0].num_rows:
        batch = pending.popleft()
        yield batch, results.take(batch.num_rows)


class _Rows:
    """Resolved results not yet handed out, in row order."""

    def __init__(self):
        self.tables: deque[pa.Table] = deque()
        self.rows = 0

    def add(self, table: pa.Table) -> None:
        self.tables.append(table)
        self.rows += table.num_rows

    def take(self, n: int) -> pa.Table:
        """The next ``n`` rows."""
        out: list[pa.Table] = []
        need = n
        while need:
            head = self.tables[0]
            if head.num_rows <= need:
                out.append(self.tables.popleft())
                need -= head.num_rows
            else:
                out.append(head.slice(0, need))
                self.tables[0] = head.slice(need)
                need = 0
        self.rows -= n
        return pa.concat_tables(out)


# --------------------------------------------------------------------------- keys
def rows_digest(table: pa.Table) -> str:
    """sha256 of a table's columns by value (names, types, which values are null, the values), the
    same however its rows lie in memory. Hand-written: Arrow has no hash of a table's values, and
    its IPC bytes carry the layout (slices, chunks, whatever bytes sit under a null slot or past the
    last bit of a bitmap), which differs for the same rows read from different places."""
    h = hashlib.sha256(f"{table.num_rows}\0".encode())
    for field, column in zip(table.schema, table.columns):
        h.update(f"{field.name}\0{field.type}\0".encode())
        _hash_values(h, column.combine_chunks() if column.num_chunks != 1 else column.chunk(0))
    return h.hexdigest()


def _hash_values(h, array: pa.Array) -> None:
    t = array.type
    h.update(len(array).to_bytes(8, "little"))
    if len(array) == 0:
        return
    if array.null_count:
        h.update(b"nulls" + pc.is_valid(array).to_numpy(zero_copy_only=False).tobytes())
    if pa.types.is_string(t) or pa.types.is_binary(t) or pa.types.is_large_string(t) or pa.types.is_large_binary(t):
        big = pa.types.is_large_string(t) or pa.types.is_large_binary(t)
        if array.null_count:  # a null slot's bytes (normally none) are not its value
            array = pc.fill_null(array, "" if pa.types.is_string(t) or pa.types.is_large_string(t) else b"")
        _, offsets_buf, data_buf = array.buffers()
        width = 8 if big else 4
        offsets = np.frombuffer(offsets_buf, np.int64 if big else np.int32, len(array) + 1, array.offset * width)
        h.update(np.diff(offsets).astype(np.int64).tobytes())
        if data_buf is not None and offsets[-1] > offsets[0]:
            h.update(memoryview(data_buf)[int(offsets[0]):int(offsets[-1])])
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        h.update(pc.fill_null(pc.list_value_length(array), 0).to_numpy(zero_copy_only=False).astype(np.int64).tobytes())
        _hash_values(h, array.flatten())  # the values of the non-null lists, slicing accounted for
    elif pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        values = pc.fill_null(array, False if pa.types.is_boolean(t) else 0) if array.null_count else array
        h.update(values.to_numpy(zero_copy_only=False).tobytes())
    elif pa.types.is_null(t):
        pass
    else:  # anything else (structs, dates, dictionaries...): by its Python values
        h.update(repr(array.to_pylist()).encode())


# --------------------------------------------------------------------------- the store
class RepoStore:
    """Repositories' results under ``root/<key[:2]>/<key>.arrow`` (a few thousand entries per
    folder at most for a million repositories). Arrow IPC files, not Parquet: an entry is small
    (a few columns per file) and read and written once per repository, where Parquet's per-file
    cost (metadata, encoders) would exceed a one-file repository's share of the work."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}{SUFFIX}"

    def load(self, key: str, schema: pa.Schema) -> pa.Table | None:
        """The entry, or None when there is none (or it cannot be read: it is then recomputed)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with pa.OSFile(str(path), "rb") as source:
                return pa.ipc.open_file(source).read_all().cast(schema)
        except (OSError, ValueError, pa.ArrowException):
            return None

    def save(self, key: str, rows: pa.Table) -> None:
        """Written under a temporary name and renamed: an entry is whole or absent. Not fsynced
        (a part's record is): one sync per repository would cost more than small repositories'
        curation, and an entry a crash of the machine left unreadable is only recomputed (``load``)."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, rows.schema) as writer:
                writer.write_table(rows)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def prune(self, keep: set[str]) -> None:
        """Remove entries of other keys and leftovers of killed writes: the store holds what the
        last completed run used."""
        if not self.root.is_dir():
            return
        for shard in self.root.iterdir():
            if not shard.is_dir():
                shard.unlink(missing_ok=True)
                continue
            for entry in shard.iterdir():
                if not (entry.name.endswith(SUFFIX) and entry.name[: -len(SUFFIX)] in keep):
                    entry.unlink(missing_ok=True)
            if not any(shard.iterdir()):
                shard.rmdir()
