"""Partitioned Parquet datasets: the format every stage's content table is stored in.

A dataset is a folder (local, or an ``s3://bucket/prefix``)::

    part-00000.parquet  part-00001.parquet  ...  _manifest.json

Each part is written complete under a temporary name and renamed (on S3 an object PUT is already
atomic: an object is visible whole or not at all). ``_manifest.json`` is written last, atomically,
and lists the complete parts in order with their rows, bytes and a sha256 of the file's bytes, plus
the dataset's Arrow schema. A folder without a manifest is incomplete: readers here refuse it.
pyarrow ignores ``_``/``.``-prefixed files, so ``pq.read_table(folder)`` reads the same rows in
part order.

Why parts: no stage needs its whole input in one process. A part holds whole repositories (ingest
cuts them per group of repositories), and part-aligned stages (dedup, curate) write output part i
from input part i, so parts can be processed independently and a resumed stage can skip parts
whose input digest it has already seen.

    w = PartWriter("data/x/files", schema, part_bytes=64 << 20)
    for batch in batches: w.write(batch)
    manifest = w.close()
    info = write_part(root, 3, table)            # a worker writes its own part
    write_manifest(root, [info, ...], schema)    # the driver, last
    for t in iter_tables(root, columns=["content"]): ...   # row group by row group
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

MANIFEST = "_manifest.json"
FORMAT = "starflow.dataset/1"
COMPRESSION = "zstd"


@dataclass(frozen=True)
class PartInfo:
    """One complete part, as the manifest lists it."""

    name: str
    """File name inside the dataset folder (``part-00000.parquet``)."""
    rows: int
    bytes: int
    """Size of the Parquet file."""
    sha256: str
    """Digest of the file's bytes: a consumer (or a resumed stage) tells a part's identity by it."""


@dataclass(frozen=True)
class Manifest:
    """The parts of a complete dataset, in order, and its schema."""

    parts: list[PartInfo]
    schema: pa.Schema
    num_rows: int = 0
    bytes: int = 0
    digest: str = ""
    """sha256 over the parts' names and digests in order: one identity for the whole dataset."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Free-form extras a stage records (kept as is)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "num_rows": self.num_rows,
            "bytes": self.bytes,
            "digest": self.digest,
            "parts": [asdict(p) for p in self.parts],
            "schema": _schema_to_json(self.schema),
            "meta": self.meta,
        }


# ---------------------------------------------------------------- paths and filesystems


def resolve(root: str | Path) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local path or a URI (``s3://bucket/prefix``).

    For S3 the endpoint comes from ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (a MinIO or moto
    server), credentials and region from the usual AWS variables and files."""
    text = str(root)
    if "://" not in text:
        return pafs.LocalFileSystem(), str(Path(text).absolute())
    url = urlparse(text)
    if url.scheme in ("s3", "s3a"):
        return _s3(), f"{url.netloc}{url.path}".rstrip("/")
    if url.scheme == "file":
        return pafs.LocalFileSystem(), url.path
    fs, path = pafs.FileSystem.from_uri(text)
    return fs, path.rstrip("/")


def _s3() -> pafs.S3FileSystem:
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    # allow_delayed_open: an object smaller than one upload part goes as a single PutObject, not a
    # multipart upload (fewer requests, and moto's server mis-answers CompleteMultipartUpload to Arrow).
    if not endpoint:
        return pafs.S3FileSystem(region=region, allow_delayed_open=True)
    url = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
    return pafs.S3FileSystem(endpoint_override=url.netloc, scheme=url.scheme or "https", region=region, allow_delayed_open=True)


def _join(root: str | Path, name: str) -> str:
    """A part's address in the same form as ``root`` (a URI stays a URI)."""
    text = str(root)
    if "://" in text:
        return f"{text.rstrip('/')}/{name}"
    return str(Path(text) / name)


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def is_dataset(path: str | Path) -> bool:
    """True when ``path`` is a folder holding a manifest (a complete dataset)."""
    fs, p = resolve(path)
    return fs.get_file_info(f"{p}/{MANIFEST}").type == pafs.FileType.File


# ---------------------------------------------------------------- writing


class _HashingSink:
    """A file-like sink that forwards to a pyarrow stream and hashes what passes through, so a
    part's digest costs no second read of the file (hand-written: pyarrow has no hashing stream)."""

    def __init__(self, stream: pa.NativeFile):
        self.stream = stream
        self.hash = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data) -> int:
        view = memoryview(data)
        self.hash.update(view)
        self.stream.write(view)
        self.size += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        # Deliberately nothing: on S3 a flush uploads a multipart part; close() sends a small part
        # as one PutObject instead (and a local stream is synced on commit).
        pass

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        # pq.ParquetWriter closes its sink; the stream is closed (and renamed) by PartStream.
        self.closed = True


class PartStream:
    """One part written table by table (each ``write`` one or more row groups): a temp name
    (local) or the final object (S3), renamed on ``commit``; for a worker that streams its own
    part (``write_part`` when the table is whole in memory). A part with no writes is a valid,
    empty part.

        with PartStream(root, 3, schema) as part:
            for t in tables: part.write(t)
        part.info  # the PartInfo, once committed
    """

    def __init__(self, root: str | Path, index: int, schema: pa.Schema):
        self.fs, base = resolve(root)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        self.name = part_name(index)
        self.final = f"{base}/{self.name}"
        self.fs.create_dir(base, recursive=True)
        self.target = f"{base}/.{self.name}.{uuid.uuid4().hex[:8]}.tmp" if self.local else self.final
        self.stream = self.fs.open_output_stream(self.target)
        self.sink = _HashingSink(self.stream)
        self.writer = pq.ParquetWriter(self.sink, schema, compression=COMPRESSION)
        self.rows = 0

    def write(self, table: pa.Table, row_group_bytes: int | None = None) -> None:
        for piece in row_group_slices(table, row_group_bytes):
            # One contiguous row group per piece: chunk boundaries would otherwise show in the page
            # layout, and the same rows must give the same bytes however they were chunked.
            self.writer.write_table(piece.combine_chunks(), row_group_size=max(piece.num_rows, 1))
        self.rows += table.num_rows

    def commit(self) -> PartInfo:
        self.writer.close()
        self.stream.close()
        if self.local:
            _fsync(self.target)
            os.replace(self.target, self.final)
        return PartInfo(self.name, self.rows, self.sink.size, self.sink.hash.hexdigest())

    def abort(self) -> None:
        try:
            self.writer.close()
            self.stream.close()
        finally:
            if self.local and os.path.exists(self.target):
                os.unlink(self.target)

    def __enter__(self) -> "PartStream":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.info = self.commit()
        else:
            self.abort()


def _fsync(path: str) -> None:
    # pyarrow's local output stream does not expose its descriptor; a reopened one syncs the same file.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def data_bytes(table: pa.Table) -> int:
    """Bytes of the values in ``table``, the same however it is chunked or whether it carries a
    validity bitmap (``Table.nbytes`` counts buffers, so a table read back from Parquet can differ
    from the one written): what a writer cuts row groups and parts on, so that a resumed run,
    fed tables read back from disk, cuts exactly where the uninterrupted run cut."""
    return sum(_column_bytes(column) for column in table.columns)


def _column_bytes(column: pa.ChunkedArray | pa.Array) -> int:
    t = column.type
    n = len(column)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return int(pc.sum(pc.binary_length(column)).as_py() or 0) + 4 * n
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        flat = pc.list_flatten(column)
        return _column_bytes(flat) + 4 * n
    try:
        return t.bit_width * n // 8
    except ValueError:  # nested or other types without a fixed width: their buffers
        return column.nbytes


def row_group_slices(table: pa.Table, row_group_bytes: int | None) -> list[pa.Table]:
    """``table`` cut into consecutive slices of about ``row_group_bytes`` of variable-width data
    (strings, binaries: the content) each, a row never split; None: the whole table."""
    if not row_group_bytes or table.num_rows == 0:
        return [table]
    sizes = np.zeros(table.num_rows, np.int64)
    for column in table.columns:
        t = column.type
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
            sizes += pc.fill_null(pc.binary_length(column), 0).to_numpy().astype(np.int64)
    # start a new slice at the row that would take the running total past a multiple of the limit
    bounds = np.searchsorted(np.cumsum(sizes), np.arange(1, int(sizes.sum()) // row_group_bytes + 1) * row_group_bytes,
                             side="left")
    starts = sorted({0, *(int(b) for b in bounds if 0 < b < table.num_rows)})
    ends = starts[1:] + [table.num_rows]
    return [table.slice(a, b - a) for a, b in zip(starts, ends)]


def write_part(root: str | Path, index: int, table: pa.Table, schema: pa.Schema | None = None,
               row_group_bytes: int | None = None) -> PartInfo:
    """Write ``table`` as part ``index`` of the dataset at ``root``, atomically; the manifest is the
    caller's (``write_manifest``, once every part is done). For part-aligned stages: a worker writes
    its own part and returns the PartInfo to the driver. ``row_group_bytes``: row groups of about
    that much variable-width data (readers hold one at a time); None: one row group per table."""
    part = PartStream(root, index, schema or table.schema)
    try:
        part.write(table if schema is None else table.cast(schema), row_group_bytes)
    except BaseException:
        part.abort()
        raise
    return part.commit()


def write_manifest(
    root: str | Path, parts: Sequence[PartInfo], schema: pa.Schema, meta: dict[str, Any] | None = None, prune: bool = True
) -> Manifest:
    """Write ``_manifest.json`` last, atomically: from now on the dataset is complete.

    ``prune`` removes ``part-*.parquet`` files the manifest does not list (left by an earlier,
    longer write into the same folder), so ``pq.read_table(folder)`` reads exactly the listed rows."""
    parts = list(parts)
    names = [p.name for p in parts]
    if len(set(names)) != len(names):
        raise ValueError(f"{root}: duplicate part names in manifest")
    digest = hashlib.sha256("".join(f"{p.name}:{p.sha256}\n" for p in parts).encode()).hexdigest()
    manifest = Manifest(
        parts=parts,
        schema=schema,
        num_rows=sum(p.rows for p in parts),
        bytes=sum(p.bytes for p in parts),
        digest=digest,
        meta=dict(meta or {}),
    )
    fs, base = resolve(root)
    fs.create_dir(base, recursive=True)
    if prune:
        listed = set(names)
        for info in fs.get_file_info(pafs.FileSelector(base)):
            name = info.base_name
            if info.type == pafs.FileType.File and name.startswith("part-") and name not in listed:
                fs.delete_file(info.path)
    data = (json.dumps(manifest.to_json(), indent=2, sort_keys=True) + "\n").encode()
    if isinstance(fs, pafs.LocalFileSystem):
        tmp = f"{base}/.{MANIFEST}.{uuid.uuid4().hex[:8]}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, f"{base}/{MANIFEST}")
    else:
        with fs.open_output_stream(f"{base}/{MANIFEST}") as out:
            out.write(data)
    return manifest


class PartWriter:
    """Stream tables into parts of about ``part_bytes`` (``data_bytes``) each.

    Each ``write`` goes straight to the open part as row groups, so memory holds only the caller's
    table; a part is committed (renamed) when it reaches ``part_bytes``, and ``close`` writes the
    manifest. A dataset with no rows still gets one empty part, so its schema is readable by
    ``pq.read_table(folder)`` too. Whole-repository parts: call ``cut()`` between repositories."""

    def __init__(self, root: str | Path, schema: pa.Schema, part_bytes: int | None = 64 << 20,
                 meta: dict[str, Any] | None = None, row_group_bytes: int | None = None):
        self.root = root
        self.schema = schema
        self.part_bytes = part_bytes
        """None: parts are cut only by ``cut()``."""
        self.row_group_bytes = row_group_bytes
        self.meta = meta
        self.parts: list[PartInfo] = []
        self._open: PartStream | None = None
        self._bytes = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self._open is None:
            self._open = PartStream(self.root, len(self.parts), self.schema)
            self._bytes = 0
        self._open.write(table.select(self.schema.names).cast(self.schema), self.row_group_bytes)
        self._bytes += data_bytes(table)
        if self.part_bytes is not None and self._bytes >= self.part_bytes:
            self.cut()

    def cut(self, keep_empty: bool = False) -> None:
        """Commit the open part: the next write starts a new one. With no rows since the last cut,
        nothing, unless ``keep_empty`` (part-aligned outputs: part i must stay part i)."""
        if self._open is not None:
            self.parts.append(self._open.commit())
            self._open = None
        elif keep_empty:
            self.parts.append(write_part(self.root, len(self.parts), self.schema.empty_table()))

    def close(self) -> Manifest:
        self.cut()
        if not self.parts:
            self.parts.append(write_part(self.root, 0, self.schema.empty_table()))
        return write_manifest(self.root, self.parts, self.schema, self.meta)

    def abort(self) -> None:
        if self._open is not None:
            self._open.abort()
            self._open = None

    def __enter__(self) -> "PartWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# ---------------------------------------------------------------- reading


def read_manifest(root: str | Path) -> Manifest:
    """The manifest of a complete dataset; a clear error when it is missing (incomplete) or broken."""
    fs, base = resolve(root)
    try:
        with fs.open_input_stream(f"{base}/{MANIFEST}") as fh:
            obj = json.loads(fh.read().decode())
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{root}: not a complete dataset (no {MANIFEST})") from exc
    except (OSError, ValueError) as exc:
        raise ValueError(f"{root}: unreadable {MANIFEST} ({exc})") from exc
    if obj.get("format") != FORMAT:
        raise ValueError(f"{root}: {MANIFEST} has format {obj.get('format')!r}, expected {FORMAT!r}")
    return Manifest(
        parts=[PartInfo(**p) for p in obj["parts"]],
        schema=_schema_from_json(obj["schema"]),
        num_rows=obj["num_rows"],
        bytes=obj["bytes"],
        digest=obj["digest"],
        meta=obj.get("meta") or {},
    )


def part_paths(root: str | Path) -> list[str]:
    """The complete parts' addresses in order (local paths, or URIs for a URI root)."""
    return [_join(root, p.name) for p in read_manifest(root).parts]


def open_part(path: str | Path) -> pq.ParquetFile:
    """A part (or any Parquet file), local or a URI, opened for reading by row group."""
    fs, p = resolve(path)
    return pq.ParquetFile(fs.open_input_file(p))


def iter_tables(root: str | Path, columns: Sequence[str] | None = None) -> Iterator[pa.Table]:
    """The dataset's rows, one row group at a time, in part order (memory: one row group)."""
    cols = list(columns) if columns is not None else None
    for path in part_paths(root):
        pf = open_part(path)
        for i in range(pf.num_row_groups):
            yield pf.read_row_group(i, columns=cols)


def read_dataset(root: str | Path, columns: Sequence[str] | None = None) -> pa.Table:
    """The whole dataset as one table (for small consumers and tests)."""
    manifest = read_manifest(root)
    schema = manifest.schema if columns is None else pa.schema([manifest.schema.field(c) for c in columns])
    tables = []
    for path in part_paths(root):
        t = open_part(path).read(columns=list(columns) if columns is not None else None)
        tables.append(t.cast(schema) if t.schema != schema else t)
    return pa.concat_tables(tables) if tables else schema.empty_table()


# ---------------------------------------------------------------- schema (de)serialisation


def _schema_to_json(schema: pa.Schema) -> dict[str, Any]:
    """Readable field list for people, plus the IPC bytes that restore the exact Arrow schema."""
    return {
        "fields": [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema],
        "arrow_ipc": base64.b64encode(schema.serialize().to_pybytes()).decode(),
    }


def _schema_from_json(obj: dict[str, Any]) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(obj["arrow_ipc"])))
