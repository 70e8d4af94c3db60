"""The Stack v2 as released: id files listed in the driver, contents fetched from S3 in the workers.

BigCode's releases are Parquet files of ids and metadata, without content, in two layouts (both
read here, told apart by their columns):

* one row per file (``bigcode/the-stack-v2``, ``-dedup``): ``blob_id, repo_name, path,
  src_encoding, language, license_type, detected_licenses, length_bytes, gha_license_id,
  star_events_count, ...``;
* one row per repository (``the-stack-v2-train-full-ids``, ``-smol-ids``): ``repo_name``, the
  repository's columns (``star_events_count``, ``gha_license_id``, ``revision_id``...) and
  ``files``, a list of ``{blob_id, path, src_encoding, language, license_type,
  detected_licenses, length_bytes, ...}``.

A content is the gzip object ``s3://softwareheritage/content/<blob_id>``, decoded with the file's
``src_encoding`` (the paper, https://arxiv.org/abs/2402.19173 §2.1; the dataset card's example
fetches it with unsigned boto3 requests).

How it runs:

* the driver lists repositories from the id files' ``repo_name`` and ``length_bytes`` columns
  (``files``' ``length_bytes`` in the per-repository layout), a row group at a time
  (``sources.parquet_repositories``), so groups are sized by the contents' bytes and nothing
  else is read;
* the task that ingests a group reads its repositories' id rows (``sources.load_rows``, by row
  group, only the columns used) and fetches their contents here (``BlobStore.fetch``):
  ``concurrency`` requests in flight from a thread pool, retried with exponential back-off,
  through a local content cache. ``load_rows`` given the stage's size cap and opt-out list fetches
  the whole group in one pool; otherwise ``sources.read_files`` fetches each repository's files as
  it is read. Files at or over ``ingest.max_file_bytes`` (the row's ``length_bytes``) are never
  fetched, nor are the files of opted-out repositories.

Every content that cannot be had becomes a rejected row of its own, named in ``reason`` and
counted in ``stats.json: rejected_by_reason``: ``missing_blob`` (404, or a row without a
``blob_id``), ``bad_gzip`` (not a gzip stream, or truncated), ``undecodable`` (not valid in its
``src_encoding``, or an encoding Python does not know), ``too_large`` (the decompressed content
reaches ``max_file_bytes`` though ``length_bytes`` said less). A fetch that still fails after
``max_attempts`` (throttling, 5xx, connection errors; 403 and other client errors at once) is not
a property of the data: by default (``fetch_failures: stop``) it fails the task and the stage, so
a transient outage never becomes a hole in a versioned output; with ``reject`` it is a
``fetch_failed`` row. A row without ``src_encoding`` is handed over as bytes and decoded like any
file (UTF-8, else a detected encoding).

Why retries are ours, not botocore's (its retries are switched off): botocore retries a request
until its response headers arrive, but not an error while reading the body (a connection cut in
the middle of a blob is ``ResponseStreamingError`` to the caller); its "standard" mode also takes
every retry from one quota per client, so sustained throttling of a bulk download turns into
failed files instead of slower ones; and its back-off base is fixed at one second. Here one loop
covers request and body, per content, with a configurable base (``backoff_s``) and full jitter.
"""

from __future__ import annotations

import codecs
import logging
import os
import random
import re
import threading
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ray_tasks.ingest.licenses import RepoLicenses
from ray_tasks.ingest.params import StackV2Source
from ray_tasks.ingest.sources import (
    STACK_META_COLUMNS, RawFile, Repository, _check_columns, _map_columns, parquet_repositories, table_files,
    table_repository,
)

log = logging.getLogger(__name__)

ID_COLUMNS = ("repo_name", "path", "blob_id")
"""Columns an id file must have (after ``columns`` renames); per-repository files: ``repo_name``
and ``files`` whose entries have ``path`` and ``blob_id``."""
FILES = "files"
"""The per-repository layout's list of files."""
READ_COLUMNS = ID_COLUMNS + tuple(c for c in STACK_META_COLUMNS if c not in ID_COLUMNS) + ("length_bytes",)
"""What the workers read of an id row (the release has 26 columns; the rest is not used by ingest)."""

RETRYABLE_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
                              "TooManyRequests", "RequestTimeout", "RequestTimeoutException",
                              "InternalError", "ServiceUnavailable"})
"""S3 error codes worth another try (besides any 5xx and 429): throttling and timeouts."""
MISSING_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
CACHEABLE_ID = re.compile(r"[0-9A-Fa-f]{8,128}")
"""A blob id that is safe as a file name (SWH's are 40 hex digits); others bypass the cache."""

COUNTS: Counter[str] = Counter()
"""This process's fetch counters (requests, retries, cache_hits, fetched_bytes...), for logs and
measurements; outputs never depend on them."""
_COUNTS_LOCK = threading.Lock()


def _count(**kv: int) -> None:
    with _COUNTS_LOCK:
        COUNTS.update(kv)


# --------------------------------------------------------------------------- listing (driver)
def stack_v2_repositories(spec: StackV2Source, path: str | Path, cache_dir: Path | None,
                          skipped: list[RawFile]) -> Iterator[Repository]:
    """Repositories of the id files at ``path`` (local or a URI), listed from ``repo_name`` and
    ``length_bytes`` only; each carries the ``BlobStore`` its worker fetches contents from. An id
    file that cannot be read is a counted skip in ``skipped``."""
    store = BlobStore.from_params(spec, cache_dir)
    columns = spec.columns
    yield from parquet_repositories(table_files(path, "parquet"), columns, spec.max_files_per_repo, skipped,
                                    kind="stack_v2", check=lambda pf, f: check_ids(pf.schema_arrow, columns, f),
                                    row_sizes=lambda pf, rg: content_sizes(pf, rg, columns), blobs=store)


def per_repository(schema: pa.Schema, columns: dict[str, str]) -> bool:
    """True for the train-*-ids layout: a ``files`` list of structs and no top-level ``blob_id``."""
    if columns.get("blob_id", "blob_id") in schema.names or FILES not in schema.names:
        return False
    kind = schema.field(FILES).type
    return (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and pa.types.is_struct(kind.value_type)


def check_ids(schema: pa.Schema, columns: dict[str, str], path: str | Path) -> None:
    """A clear error when an id file lacks what a file's content is found by."""
    if not per_repository(schema, columns):
        _check_columns(schema.names, columns, path, ID_COLUMNS)
        return
    _check_columns(schema.names, columns, path, ("repo_name",))
    inner = [f.name for f in schema.field(FILES).type.value_type]
    missing = [c for c in ("path", "blob_id") if columns.get(c, c) not in inner]
    if missing:
        raise ValueError(f"ingest.sources: {path}: the entries of its `files` column lack {missing}; they have {inner}")


def content_sizes(pf, rg: int, columns: dict[str, str]) -> list[float]:
    """The contents' bytes of each row of a row group (its files' in the per-repository layout),
    from ``length_bytes``; without that column, each row's share of the row group's bytes."""
    schema = pf.schema_arrow
    rows = pf.metadata.row_group(rg).num_rows
    if per_repository(schema, columns):
        leaf = next((c.path for c in (pf.schema.column(i) for i in range(pf.metadata.num_columns))
                     if c.path.startswith(f"{FILES}.") and c.path.endswith(".length_bytes")), None)
        if leaf is not None:
            nested = pf.read_row_group(rg, columns=[leaf]).column(0).combine_chunks()
            values = pc.fill_null(pc.struct_field(pc.list_flatten(nested), "length_bytes"), 0)
            parents = pc.list_parent_indices(nested)
            return np.bincount(parents.to_numpy(), weights=values.to_numpy(), minlength=rows).tolist()
    elif columns.get("length_bytes", "length_bytes") in schema.names:
        sizes = pf.read_row_group(rg, columns=[columns.get("length_bytes", "length_bytes")]).column(0)
        return pc.fill_null(sizes, 0).to_numpy().astype(float).tolist()
    return [pf.metadata.row_group(rg).total_byte_size / max(rows, 1)] * rows


# --------------------------------------------------------------------------- id rows (worker)
def read_ids(pf, rg: int, columns: dict[str, str], path: str | Path) -> pa.Table:
    """One row group of an id file as one row per file, StarFlow's column names, only the columns
    ingest uses (the release has 26; the per-repository layout's repository columns are repeated
    on each of its files)."""
    schema = pf.schema_arrow
    theirs = {columns.get(c, c) for c in READ_COLUMNS}
    if per_repository(schema, columns):
        table = pf.read_row_group(rg, columns=[n for n in schema.names if n in theirs or n == FILES])
        table = _one_row_per_file(table)
    else:
        table = pf.read_row_group(rg, columns=[n for n in schema.names if n in theirs])
    return _map_columns(table, columns, path, ID_COLUMNS)


def _one_row_per_file(table: pa.Table) -> pa.Table:
    """Explode ``files``: each entry a row, with its repository's columns (the entry's own value
    wins where both have one, e.g. ``language``)."""
    files = table.column(FILES).combine_chunks()
    entries = pc.list_flatten(files)
    out = table.drop_columns([FILES]).take(pc.list_parent_indices(files))
    for i, field in enumerate(entries.type):
        column = entries.field(i)
        if field.name in out.column_names:
            out = out.set_column(out.column_names.index(field.name), field.name, column)
        else:
            out = out.append_column(field.name, column)
    return out


def id_rows(table: pa.Table) -> Iterator[RawFile]:
    """Rows of an id table (StarFlow column names) as files without content yet: ``size`` is the
    release's ``length_bytes`` (what the size cap is checked against before fetching), ``meta`` the
    release's columns plus ``blob_id``."""
    for row in table.to_pylist():
        meta = {k: row[k] for k in STACK_META_COLUMNS if row.get(k) is not None}
        meta["blob_id"] = row.get("blob_id")
        yield RawFile(row["repo_name"] or "<unknown>", row["path"], None, int(row.get("length_bytes") or 0), meta=meta)


def repository(name: str, rows: list[RawFile], max_files: int | None, store: "BlobStore") -> Repository:
    """A Stack v2 repository of id rows. Licenses are the release's: each file keeps its own
    ``license_type``/``detected_licenses`` (``stage._row``), the repository (``repos.parquet``) gets
    their union with ``gha_license_id`` declared; nothing is scanned (there is no content yet)."""
    repo = table_repository(name, "stack_v2", rows, max_files)
    detected = sorted({lic for r in repo.rows for lic in r.meta.get("detected_licenses") or []})
    repo.known_licenses = RepoLicenses(declared=repo.declared or [], by_dir={"": detected} if detected else {})
    repo.blobs = store
    return repo


# --------------------------------------------------------------------------- contents (worker)
class MissingBlob(Exception):
    pass


class FetchFailed(Exception):
    pass


class BadGzip(Exception):
    pass


class TooLarge(Exception):
    pass


class Undecodable(Exception):
    pass


@dataclass(frozen=True)
class BlobStore:
    """Where the contents are and how they are fetched; small and picklable, it travels to the
    workers inside each repository (the S3 client is made there, once per process)."""

    bucket: str
    key_prefix: str
    endpoint_url: str | None
    region: str
    unsigned: bool
    concurrency: int
    max_attempts: int
    backoff_s: float
    backoff_max_s: float
    timeout_s: float
    cache_dir: str | None
    """Absolute path of the content cache (resolved in the driver), or None."""
    fetch_failures: str = "stop"

    @classmethod
    def from_params(cls, spec: StackV2Source, cache_dir: Path | None) -> "BlobStore":
        return cls(spec.bucket, spec.key_prefix, spec.endpoint_url, spec.region, spec.unsigned, spec.concurrency,
                   spec.max_attempts, spec.backoff_s, spec.backoff_max_s, spec.timeout_s,
                   str(Path(cache_dir).absolute()) if cache_dir is not None else None, spec.fetch_failures)

    def url(self, blob_id: str) -> str:
        return f"s3://{self.bucket}/{self.key_prefix}{blob_id}"

    # ---------------------------------------------------------------- files
    def fetch(self, rows: Iterable[RawFile], max_file_bytes: int) -> list[RawFile]:
        """The rows, in order, with their contents: ``text`` decoded with ``src_encoding`` (or
        ``data`` when the row has none), or a named ``error``. Rows that already have an error (too
        large) are not fetched; the others are fetched ``concurrency`` at a time. ``FetchFailed``
        when a fetch failed for good and ``fetch_failures`` is ``stop``."""
        rows = list(rows)
        todo = [i for i, r in enumerate(rows) if r.error is None and r.text is None and r.data is None]
        if not todo:
            return rows
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(todo)), thread_name_prefix="stack-v2") as pool:
            for i, done in zip(todo, pool.map(lambda i: self.file(rows[i], max_file_bytes), todo)):
                rows[i] = done
        failed = [r for r in rows if (r.error or "").startswith("fetch_failed")]
        if failed and self.fetch_failures == "stop":
            raise FetchFailed(f"{len(failed)} of {len(todo)} contents of {failed[0].repo_name} could not be fetched "
                              f"(ingest.sources: fetch_failures: stop); first: {failed[0].path}: "
                              f"{failed[0].error.removeprefix('fetch_failed: ')}")
        return rows

    def file(self, row: RawFile, max_file_bytes: int) -> RawFile:
        """One row with its content, or with the error that names why there is none."""
        blob_id = row.meta.get("blob_id")
        if not blob_id:
            return replace(row, error="missing_blob: the row has no blob_id")
        try:
            data = self.content(str(blob_id), max_file_bytes)
        except MissingBlob as exc:
            return replace(row, error=f"missing_blob: {exc}")
        except FetchFailed as exc:
            return replace(row, error=f"fetch_failed: {exc}")
        except BadGzip as exc:
            return replace(row, error=f"bad_gzip: {self.url(blob_id)}: {exc}")
        except TooLarge:
            return replace(row, error=f"too_large: {self.url(blob_id)} decompresses to {max_file_bytes} bytes or more")
        encoding = row.meta.get("src_encoding")
        if not encoding:  # no recorded encoding: the stage decodes the bytes like any file's
            return replace(row, data=data, size=len(data))
        try:
            text = decode_as(data, str(encoding))
        except Undecodable as exc:
            return replace(row, size=len(data), error=f"undecodable: {self.url(blob_id)}: {exc}")
        return replace(row, text=text, size=len(data))

    # ---------------------------------------------------------------- blobs
    def content(self, blob_id: str, max_file_bytes: int) -> bytes:
        """The decompressed bytes of a blob: from the cache when it is there, else fetched (and
        then cached, once it has decompressed whole)."""
        cached = self._cache_path(blob_id)
        if cached is not None and cached.is_file():
            try:
                data = gunzip(cached.read_bytes(), max_file_bytes)
                _count(cache_hits=1)
                return data
            except BadGzip:  # a damaged cache file (never written so, but disks fail): fetch again
                cached.unlink(missing_ok=True)
            except OSError:
                pass
        compressed = self.get(blob_id)
        data = gunzip(compressed, max_file_bytes)
        if cached is not None:
            _write_atomic(cached, compressed)
        return data

    def get(self, blob_id: str) -> bytes:
        """The stored (gzip) bytes of a blob from S3, retried with back-off on throttling, 5xx and
        connection or read errors; ``MissingBlob`` on 404, ``FetchFailed`` otherwise."""
        from botocore.exceptions import BotoCoreError, ClientError

        key = f"{self.key_prefix}{blob_id}"
        last = ""
        for attempt in range(self.max_attempts):
            if attempt:
                _count(retries=1)
                time.sleep(self.delay(attempt - 1))
            _count(requests=1)
            try:
                body = _client(self).get_object(Bucket=self.bucket, Key=key)["Body"]
                try:
                    data = body.read()
                finally:
                    body.close()
                _count(fetched=1, fetched_bytes=len(data))
                return data
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
                last = f"{code} (HTTP {status})" if code and code != str(status) else f"HTTP {status}"
                if status == 404 or code in MISSING_CODES:
                    raise MissingBlob(f"{self.url(blob_id)}: {last}") from None
                if not (status >= 500 or status == 429 or code in RETRYABLE_CODES):
                    raise FetchFailed(f"{self.url(blob_id)}: {last}") from None
            except BotoCoreError as exc:  # connection refused/reset/closed, timeouts, a body cut short
                last = f"{type(exc).__name__}: {exc}"
        raise FetchFailed(f"{self.url(blob_id)}: {last} after {self.max_attempts} tries")

    def delay(self, retry: int) -> float:
        """Seconds before retry ``retry`` (0-based): exponential with full jitter, capped."""
        return random.uniform(0, min(self.backoff_max_s, self.backoff_s * 2 ** retry))

    def _cache_path(self, blob_id: str) -> Path | None:
        if self.cache_dir is None or not CACHEABLE_ID.fullmatch(blob_id):
            return None
        return Path(self.cache_dir) / blob_id[:2].lower() / blob_id.lower()


_CLIENTS: dict[tuple, Any] = {}
_CLIENTS_LOCK = threading.Lock()


def _client(store: BlobStore):
    """This process's S3 client for ``store``'s endpoint (clients are thread-safe; making one costs
    milliseconds and reads config files, so every thread and task of a worker shares it)."""
    key = (store.endpoint_url, store.region, store.unsigned, store.timeout_s, store.concurrency)
    with _CLIENTS_LOCK:
        if key not in _CLIENTS:
            import boto3
            from botocore import UNSIGNED
            from botocore.config import Config

            config = Config(
                region_name=store.region,
                signature_version=UNSIGNED if store.unsigned else None,
                retries={"mode": "standard", "total_max_attempts": 1},  # ours: see the module docstring
                connect_timeout=store.timeout_s,
                read_timeout=store.timeout_s,
                max_pool_connections=store.concurrency,
            )
            _CLIENTS[key] = boto3.session.Session().client("s3", endpoint_url=store.endpoint_url, config=config)
        return _CLIENTS[key]


def gunzip(data: bytes, limit: int) -> bytes:
    """The decompressed bytes of a gzip stream (members concatenated), ``TooLarge`` once they reach
    ``limit``, ``BadGzip`` when it is not gzip or ends early.

    Hand-written over ``zlib`` because ``gzip.decompress`` has no output bound: a few kilobytes of
    gzip can expand to gigabytes, and a worker holds a group of contents at once."""
    out = bytearray()
    rest = data
    while True:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            out += inflater.decompress(rest, limit - len(out))
        except zlib.error as exc:
            raise BadGzip(str(exc)) from None
        if len(out) >= limit or inflater.unconsumed_tail:
            raise TooLarge()
        if not inflater.eof:
            raise BadGzip("truncated gzip stream" if rest else "empty object")
        rest = inflater.unused_data
        if not rest:
            return bytes(out)


def decode_as(data: bytes, encoding: str) -> str:
    """``data`` decoded strictly with the encoding The Stack v2 recorded (cchardet's names, which
    Python's codec registry knows: ``UTF-8``, ``windows-1252``, ``SHIFT_JIS``, ``UTF-16LE``...)."""
    try:
        codec = codecs.lookup(encoding)
    except LookupError:
        raise Undecodable(f"unknown encoding {encoding!r}") from None
    try:
        return data.decode(codec.name)
    except UnicodeDecodeError as exc:
        raise Undecodable(f"not valid {encoding} at byte {exc.start}: {exc.reason}") from None


def _write_atomic(path: Path, data: bytes) -> None:
    """Write a cache file under a temporary name, then rename it: a reader (another task on this
    node) sees the whole file or none. Not fsynced: a file damaged by a crash fails its gzip check
    when read and is fetched again."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        _count(cached=1)
    except OSError as exc:  # a full or read-only cache is a slower run, not a failed one
        log.warning("stack_v2: cannot cache %s: %s", path, exc)
