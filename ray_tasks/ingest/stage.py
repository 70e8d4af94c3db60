"""Ingest: raw files -> the files table, every skip counted with a reason.

Rules from The Stack v2 (the StarCoder2 paper, https://arxiv.org/abs/2402.19173, §2.1): files of 10 MiB or more and
files containing NUL bytes are dropped; text is decoded as UTF-8, else with a
detected encoding (recorded in ``src_encoding``), else the file is dropped.
Opted-out repositories (names or glob patterns) are dropped here, before
deduplication, so an opted-out copy can never be the one a duplicate cluster keeps.
"""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import pyarrow as pa

from ray_tasks.ingest.params import IngestParams
from ray_tasks.ingest.sources import RawFile, Repository, read_files
from ray_tasks.stats import breakdown
from ray_tasks.tables import reason_counts, rejected_table

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
        ("language", pa.string()),  # from the source (Stack v2's go-enry column), else null
        ("star_events_count", pa.int64()),
        ("fork_events_count", pa.int64()),
        ("revision_id", pa.string()),
        ("revision_date", pa.string()),
        ("visit_date", pa.string()),
    ]
)


@dataclass
class Decoded:
    text: str | None
    reason: str | None
    encoding: str | None = None


# Encodings source code is actually written in; letting the detector choose among
# all ~100 code pages turns a Latin-1 "café" into Urdu (cp1006).
CANDIDATE_ENCODINGS = ["utf_16", "cp1252", "latin_1", "iso8859_15", "cp1250", "iso8859_2", "cp1251", "koi8_r",
                       "iso8859_7", "cp1253", "iso8859_9", "cp1254", "cp1255", "cp1256", "tis_620", "shift_jis",
                       "euc_jp", "gb18030", "big5", "euc_kr", "cp949"]


def decode(raw: RawFile, min_confidence_chars: int = 8) -> Decoded:
    """Text of a file, or the reason it cannot be training text.

    UTF-8 first; otherwise charset-normalizer's best guess among common
    encodings (The Stack v2 used cchardet the same way). Guesses on a handful of
    bytes are noise, so very short non-UTF-8 files are undecodable.
    """
    if raw.error is not None:
        return Decoded(None, raw.error.split(":")[0])
    if raw.text is not None:
        if "\x00" in raw.text:
            return Decoded(None, "binary")
        return Decoded(raw.text, None, raw.meta.get("src_encoding") or "UTF-8")
    data = raw.data or b""
    if b"\x00" in data:
        return Decoded(None, "binary")
    try:
        return Decoded(data.decode("utf-8"), None, "UTF-8")
    except UnicodeDecodeError:
        pass
    if len(data) >= min_confidence_chars:
        from charset_normalizer import from_bytes

        best = from_bytes(data, cp_isolation=CANDIDATE_ENCODINGS).best()
        if best is not None and best.encoding:
            return Decoded(str(best), None, best.encoding)
    return Decoded(None, "undecodable")


def opted_out(repo_name: str, patterns: Sequence[str]) -> bool:
    """Whether a repository is on the opt-out list (exact names or globs, case-insensitive)."""
    name = repo_name.lower()
    return any(fnmatch.fnmatchcase(name, p.lower()) for p in patterns)


def ingest(repositories: Iterable[Repository], cfg: IngestParams,
           source_skips: Iterable[RawFile] = ()) -> tuple[pa.Table, pa.Table]:
    """(files table, rejected table) for the given repositories, with ``cfg``'s size cap and
    opt-out list; ``source_skips`` are files a source could not hand over (counted as rejected)."""
    kept: list[dict] = []
    rejected: list[dict] = []
    for repo in repositories:
        if opted_out(repo.name, cfg.opt_out):
            rejected += [_reject(f, "opt_out", None, "repository on ingest.opt_out") for f in _listed(repo)]
            continue
        for raw in read_files(repo, cfg.max_file_bytes):
            decoded = decode(raw)
            data = raw.data if raw.data is not None else (raw.text.encode("utf-8", "surrogatepass") if raw.text is not None else None)
            sha = hashlib.sha256(data).hexdigest() if data is not None else None
            if decoded.text is None:
                rejected.append(_reject(raw, decoded.reason, sha, raw.error))
                continue
            kept.append(_row(repo, raw, decoded, sha))
    rejected += [_reject(s, s.error.split(":")[0], None, s.error) for s in source_skips]
    return pa.Table.from_pylist(kept, schema=FILES_SCHEMA), rejected_table(rejected)


def _row(repo: Repository, raw: RawFile, decoded: Decoded, sha: str | None) -> dict:
    meta = {**repo.meta, **raw.meta}
    if raw.meta.get("license_type"):  # the source's own per-file licensing (Stack v2 columns)
        license_type = raw.meta["license_type"]
        detected = list(raw.meta.get("detected_licenses") or [])
    else:
        license_type = repo.licenses.type_for(raw.path)
        detected = repo.licenses.detected_for(raw.path) or list(repo.licenses.declared)
    return dict(
        repo_name=raw.repo_name, path=raw.path, content=decoded.text, length_bytes=raw.size, sha256=sha,
        src_encoding=decoded.encoding, source=repo.source, license_type=license_type, detected_licenses=detected,
        language=meta.get("language"), star_events_count=meta.get("star_events_count"),
        fork_events_count=meta.get("fork_events_count"), revision_id=_str(meta.get("revision_id")),
        revision_date=_str(meta.get("revision_date")), visit_date=_str(meta.get("visit_date")),
    )


def _str(v) -> str | None:
    return None if v is None else str(v)


def _listed(repo: Repository) -> Iterator[RawFile]:
    if repo.rows is not None:
        yield from repo.rows
    else:
        yield from (RawFile(repo.name, rel, None, 0) for rel in repo.files)


def _reject(raw: RawFile, reason: str, sha: str | None, detail: str | None) -> dict:
    return dict(stage="ingest", reason=reason, repo_name=raw.repo_name, path=raw.path, length_bytes=raw.size,
                sha256=sha, detail=detail)


def repos_table(repositories: Iterable[Repository]) -> pa.Table:
    """``repos.parquet``: one row per repository with its licenses (comma-joined) and file count."""
    return pa.Table.from_pylist([
        {"repo_name": r.name, "source": r.source, "license_type": r.license_type,
         "detected_licenses": ",".join(r.detected_licenses), "declared_licenses": ",".join(r.licenses.declared),
         "license_files": ",".join(sorted(r.licenses.files)), "files": len(r.files)}
        for r in repositories
    ])


def ingest_stats(repos: pa.Table, files: pa.Table, rejected: pa.Table) -> dict:
    """The metrics (``metrics/ingest.json``); ``stats.json`` adds ``rejected_examples``."""
    return {
        "repositories": repos.num_rows,
        "files_seen": files.num_rows + rejected.num_rows,
        "files_kept": files.num_rows,
        "files_rejected": rejected.num_rows,
        "bytes_kept": int(sum(files.column("length_bytes").to_pylist())),
        "rejected_by_reason": reason_counts(rejected),
        "repositories_by_license_type": {k: v["files"] for k, v in breakdown(repos, "license_type").items()},
        "files_by_license_type": {k: v["files"] for k, v in breakdown(files, "license_type").items()},
        "non_utf8_files": int(sum(1 for e in files.column("src_encoding").to_pylist() if e != "UTF-8")),
    }
