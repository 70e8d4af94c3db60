"""Ingest: raw files -> the files table, every skip counted with a reason.

Rules from The Stack v2 (stack_v2_curation.md §1): files of 10 MiB or more and
files containing NUL bytes are dropped; text must decode as UTF-8.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable, Iterator

import pyarrow as pa

from ray_tasks.sources import RawFile, Repository, read_files
from ray_tasks.tables import rejected_table

FILES_SCHEMA = pa.schema(
    [
        ("repo_name", pa.string()),
        ("path", pa.string()),
        ("content", pa.large_string()),
        ("length_bytes", pa.int64()),
        ("sha256", pa.string()),
        ("src_encoding", pa.string()),
        ("source", pa.string()),
        ("license_type", pa.string()),
        ("detected_licenses", pa.list_(pa.string())),
    ]
)


@dataclass
class Decoded:
    text: str | None
    reason: str | None


def decode(raw: RawFile) -> Decoded:
    """Text of a file, or the reason it cannot be training text."""
    if raw.error is not None:
        return Decoded(None, raw.error.split(":")[0])
    data = raw.data or b""
    if b"\x00" in data:
        return Decoded(None, "binary")
    try:
        return Decoded(data.decode("utf-8"), None)
    except UnicodeDecodeError:
        return Decoded(None, "undecodable")


def ingest(repositories: Iterable[Repository], max_file_bytes: int) -> tuple[pa.Table, pa.Table]:
    """(files table, rejected table) for the given repositories."""
    kept: list[dict] = []
    rejected: list[dict] = []
    for repo in repositories:
        for raw in read_files(repo, max_file_bytes):
            decoded = decode(raw)
            sha = hashlib.sha256(raw.data).hexdigest() if raw.data is not None else None
            if decoded.text is None:
                rejected.append(
                    dict(stage="ingest", reason=decoded.reason, repo_name=raw.repo_name, path=raw.path,
                         length_bytes=raw.size, sha256=sha, detail=raw.error)
                )
                continue
            kept.append(
                dict(repo_name=raw.repo_name, path=raw.path, content=decoded.text, length_bytes=raw.size,
                     sha256=sha, src_encoding="UTF-8", source=repo.source, license_type=repo.license_type,
                     detected_licenses=repo.detected_licenses)
            )
    return pa.Table.from_pylist(kept, schema=FILES_SCHEMA), rejected_table(rejected)


def repo_summary(repositories: Iterable[Repository]) -> Iterator[dict]:
    for r in repositories:
        yield {"repo_name": r.name, "license_type": r.license_type, "detected_licenses": ",".join(r.detected_licenses), "files": len(r.files)}
