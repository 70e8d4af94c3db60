"""Ingest: raw files -> the files table, every skip counted with a reason.

Rules from The Stack v2 (the StarCoder2 paper, https://arxiv.org/abs/2402.19173, §2.1): files of 10 MiB or more and
files containing NUL bytes are dropped; text is decoded as UTF-8, else with a
detected encoding (recorded in ``src_encoding``), else the file is dropped.
Opted-out repositories (names or glob patterns) are dropped here, before
deduplication, so an opted-out copy can never be the one a duplicate cluster keeps.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ray_tasks.datasets import PartInfo, part_name, write_manifest, write_part
from ray_tasks.ingest.groups import group_by_bytes, group_key, map_ordered
from ray_tasks.ingest.params import IngestParams
from ray_tasks.ingest.parquet_stream import ParquetStream
from ray_tasks.ingest.sources import RawFile, Repository, load_rows, read_files
from ray_tasks.progress import Progress
from ray_tasks.stats import EXAMPLES_PER_REASON, examples
from ray_tasks.tables import REJECTED_SCHEMA, reason_counts, rejected_table, write_json_atomic, write_parquet_atomic

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
    """(files table, rejected table) for the given repositories, in this process and in memory
    (small inputs, tests); the stage streams the same groups to files with ``ingest_to``."""
    part = ingest_group(list(repositories), cfg)
    return part.files, pa.concat_tables([part.rejected, skips_table(source_skips)])


@dataclass
class GroupResult:
    """What one group of repositories gives: its rows of the three tables."""

    files: pa.Table
    rejected: pa.Table
    repos: pa.Table


def ingest_group(repositories: list[Repository], cfg: IngestParams) -> GroupResult:
    """Read, decode and license-scan a group of repositories (one unit of parallel work), with
    ``cfg``'s size cap and opt-out list; rows in repository order, files in path order."""
    repositories = load_rows(repositories, cfg.max_file_bytes, cfg.opt_out)
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
    return GroupResult(pa.Table.from_pylist(kept, schema=FILES_SCHEMA), rejected_table(rejected),
                       repos_table(repositories))


def skips_table(source_skips: Iterable[RawFile]) -> pa.Table:
    """Rejected rows for files a source could not hand over (a broken Parquet file...)."""
    return rejected_table([_reject(s, s.error.split(":")[0], None, s.error) for s in source_skips])


FILES_DIR = "files"
"""The files table: a partitioned dataset (``ray_tasks/datasets.py``), one part per group."""


def ingest_to(out_dir: Path, repositories: Sequence[Repository], cfg: IngestParams, use_ray: bool,
              source_skips: Iterable[RawFile] = (), progress: Progress | None = None,
              work_dir: Path | None = None, log: logging.Logger | logging.LoggerAdapter | None = None,
              plan: "IngestPlan | None" = None) -> dict:
    """The stage: every repository ingested in groups of about ``cfg.batch_bytes`` (on Ray when
    ``use_ray``, at most ``cfg.max_in_flight`` at a time), each group's rows written as it arrives:
    part i of the ``files/`` dataset is group i's kept files; ``rejected.parquet`` and
    ``repos.parquet`` are streamed in group order. Returns ``stats.json``'s content. ``out_dir``
    should be an ``AtomicDir``: the outputs appear together or not at all.

    ``work_dir``: a ``GroupStore`` of finished groups that survives an interrupted run (kept
    outside the output, which appears only at the end): a group whose key (``groups.group_key``) is
    there is reused, not recomputed, so a killed run resumes where it stopped and a repeated run
    recomputes nothing; outputs are byte-identical either way. ``plan``: ``plan_groups``'s, when the
    caller needed it first (to size the executor on the bytes left to read)."""
    log = log or logging.getLogger(__name__)
    plan = plan if plan is not None else plan_groups(repositories, cfg, work_dir)
    groups, keys, todo, store = plan.groups, plan.keys, plan.todo, plan.store
    log.info("ingest: %d groups, %d reused from %s, %d to compute", len(groups), len(groups) - len(todo),
             work_dir, len(todo))
    computed = map_ordered(ingest_group, [groups[i] for i in todo], {"cfg": cfg}, use_ray=use_ray,
                           max_in_flight=cfg.max_in_flight)
    todo_set = set(todo)
    account = IngestAccount()
    parts: list[PartInfo] = []
    files_root = out_dir / FILES_DIR
    with ParquetStream(out_dir / "rejected.parquet", REJECTED_SCHEMA, cfg.row_group_bytes) as rejected, \
            ParquetStream(out_dir / "repos.parquet", REPOS_SCHEMA, cfg.row_group_bytes, empty_ok=False) as repos:
        for i, (group, key) in enumerate(zip(groups, keys)):
            if i in todo_set:
                part = next(computed)
                # A group with failed fetches (stack_v2, fetch_failures: reject) is not kept for reuse:
                # the next run fetches those files again.
                keep = store is not None and "fetch_failed" not in part.rejected.column("reason").to_pylist()
                if keep:
                    store.put(key, part, cfg.row_group_bytes)
            else:
                part, keep = store.get(key), True
            if keep:
                parts.append(store.link_files(key, files_root, i))
            else:
                parts.append(write_part(files_root, i, part.files, FILES_SCHEMA, cfg.row_group_bytes))
            rejected.write(part.rejected)
            repos.write(part.repos)
            account.add(part.repos, part.files, part.rejected)
            if progress is not None:
                progress.advance(files=part.files.num_rows + part.rejected.num_rows, repos=len(group),
                                 bytes=sum(r.size_hint for r in group))
        skipped = skips_table(source_skips)
        rejected.write(skipped)
        account.add(REPOS_SCHEMA.empty_table(), FILES_SCHEMA.empty_table(), skipped)
    if not parts:  # no repository at all: still a readable, empty dataset
        parts.append(write_part(files_root, 0, FILES_SCHEMA.empty_table()))
    write_manifest(files_root, parts, FILES_SCHEMA)
    if store is not None:
        store.keep_only(set(keys))
    return {**account.stats(), "rejected_examples": account.examples}


@dataclass
class IngestPlan:
    """The groups of a run, their keys, and which must be computed (not in the work folder)."""

    groups: list[list[Repository]]
    keys: list[str | None]
    todo: list[int]
    store: "GroupStore | None"

    @property
    def todo_bytes(self) -> int:
        """Bytes the groups left to compute will read: what the executor choice is made on."""
        return sum(r.size_hint for i in self.todo for r in self.groups[i])


def plan_groups(repositories: Sequence[Repository], cfg: IngestParams, work_dir: Path | None = None) -> IngestPlan:
    """Repositories grouped by ``cfg.batch_bytes``, each group keyed (``groups.group_key``: a stat
    of every file it reads) and looked up in the work folder's ``GroupStore``."""
    repositories = list(repositories)
    groups = group_by_bytes(repositories, [_read_bytes(r, cfg) for r in repositories], cfg.batch_bytes,
                            names=[r.name for r in repositories])
    store = GroupStore(work_dir) if work_dir is not None else None
    keys = [group_key(g, _group_settings(g, cfg)) for g in groups] if store is not None else [None] * len(groups)
    todo = [i for i, k in enumerate(keys) if store is None or not store.has(k)]
    return IngestPlan(groups, keys, todo, store)


def _group_settings(group: Sequence[Repository], cfg: IngestParams) -> dict:
    """The settings that change a group's rows or bytes (``groups.group_key``): the size cap, which
    of its repositories are opted out, the row-group size. Not ``batch_bytes``/``max_in_flight``:
    the group's members are in its key already."""
    return {"max_file_bytes": cfg.max_file_bytes, "row_group_bytes": cfg.row_group_bytes,
            "opted_out": [opted_out(r.name, cfg.opt_out) for r in group]}


class GroupStore:
    """Finished groups on disk, one folder per group key: its ``files`` part (final bytes),
    ``rejected.parquet``, ``repos.parquet`` and ``part.json`` (the part's rows, bytes, digest).

    A group's folder is built under a temporary name and renamed, so a folder that exists is
    complete (a run killed mid-write leaves only a ``.tmp`` folder, removed on the next run).
    The final output links (hard link, else copy) the part instead of rewriting it. After a
    completed run only the groups it used are kept, so the store stays the size of one output."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob(".*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)

    def has(self, key: str) -> bool:
        return (self.root / key / "part.json").is_file()

    def put(self, key: str, part: "GroupResult", row_group_bytes: int) -> None:
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", suffix=".tmp", dir=self.root))
        try:
            info = write_part(tmp / FILES_DIR, 0, part.files, FILES_SCHEMA, row_group_bytes)
            write_parquet_atomic(part.rejected.cast(REJECTED_SCHEMA), tmp / "rejected.parquet")
            write_parquet_atomic(part.repos.cast(REPOS_SCHEMA), tmp / "repos.parquet")
            write_json_atomic(dataclasses.asdict(info), tmp / "part.json")
            final = self.root / key
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def get(self, key: str) -> "GroupResult":
        """A finished group's tables: the files table only with the columns the metrics need (its
        content stays on disk: the part itself is linked, not read)."""
        folder = self.root / key
        files = pq.read_table(folder / FILES_DIR / part_name(0), columns=["length_bytes", "src_encoding", "license_type"])
        return GroupResult(files, pq.read_table(folder / "rejected.parquet"), pq.read_table(folder / "repos.parquet"))

    def link_files(self, key: str, files_root: Path, index: int) -> PartInfo:
        """Group ``key``'s part as part ``index`` of ``files_root`` (a hard link: no bytes copied)."""
        folder = self.root / key
        info = PartInfo(**json.loads((folder / "part.json").read_text()))
        src = folder / FILES_DIR / part_name(0)
        if src.stat().st_size != info.bytes:
            raise ValueError(f"{src}: {src.stat().st_size} bytes, part.json says {info.bytes} (damaged work folder)")
        files_root.mkdir(parents=True, exist_ok=True)
        dst = files_root / part_name(index)
        tmp = files_root / f".{dst.name}.link.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
        return PartInfo(dst.name, info.rows, info.bytes, info.sha256)

    def keep_only(self, keys: set[str]) -> None:
        for folder in self.root.iterdir():
            if folder.is_dir() and folder.name not in keys:
                shutil.rmtree(folder, ignore_errors=True)


def _read_bytes(repo: Repository, cfg: IngestParams) -> int:
    """The bytes a repository's group will read (opted-out repositories read nothing)."""
    return 0 if opted_out(repo.name, cfg.opt_out) else repo.size_hint


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


REPOS_SCHEMA = pa.schema([("repo_name", pa.string()), ("source", pa.string()), ("license_type", pa.string()),
                          ("detected_licenses", pa.string()), ("declared_licenses", pa.string()),
                          ("license_files", pa.string()), ("files", pa.int64())])


def repos_table(repositories: Iterable[Repository]) -> pa.Table:
    """``repos.parquet``: one row per repository with its licenses (comma-joined) and file count."""
    return pa.Table.from_pylist([
        {"repo_name": r.name, "source": r.source, "license_type": r.license_type,
         "detected_licenses": ",".join(r.detected_licenses), "declared_licenses": ",".join(r.licenses.declared),
         "license_files": ",".join(sorted(r.licenses.files)), "files": len(r.files)}
        for r in repositories
    ], schema=REPOS_SCHEMA)


def ingest_stats(repos: pa.Table, files: pa.Table, rejected: pa.Table) -> dict:
    """The metrics (``metrics/ingest.json``) of whole tables; ``stats.json`` adds ``rejected_examples``."""
    account = IngestAccount()
    account.add(repos, files, rejected)
    return account.stats()


class IngestAccount:
    """The metrics, summed group by group as the stage writes them (the tables are never whole)."""

    def __init__(self) -> None:
        self.repositories = self.files_kept = self.files_rejected = self.bytes_kept = self.non_utf8 = 0
        self.reasons: Counter[str] = Counter()
        self.repo_types: Counter[str] = Counter()
        self.file_types: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}

    def add(self, repos: pa.Table, files: pa.Table, rejected: pa.Table) -> None:
        self.repositories += repos.num_rows
        self.files_kept += files.num_rows
        self.files_rejected += rejected.num_rows
        self.bytes_kept += int(pc.sum(files.column("length_bytes")).as_py() or 0)
        self.non_utf8 += sum(1 for e in files.column("src_encoding").to_pylist() if e != "UTF-8")
        self.reasons.update(reason_counts(rejected))
        self.repo_types.update(_values(repos, "license_type"))
        self.file_types.update(_values(files, "license_type"))
        for reason, found in examples(rejected).items():
            kept = self.examples.setdefault(reason, [])
            kept += found[:EXAMPLES_PER_REASON - len(kept)]
        self.examples = dict(sorted(self.examples.items()))

    def stats(self) -> dict:
        return {
            "repositories": self.repositories,
            "files_seen": self.files_kept + self.files_rejected,
            "files_kept": self.files_kept,
            "files_rejected": self.files_rejected,
            "bytes_kept": self.bytes_kept,
            "rejected_by_reason": dict(sorted(self.reasons.items())),
            "repositories_by_license_type": _largest_first(self.repo_types),
            "files_by_license_type": _largest_first(self.file_types),
            "non_utf8_files": self.non_utf8,
        }


def _values(table: pa.Table, column: str) -> list[str]:
    if column not in table.column_names:
        return []
    return ["<none>" if v is None else str(v) for v in table.column(column).to_pylist()]


def _largest_first(counts: Counter[str]) -> dict[str, int]:
    """As ``ray_tasks.stats.breakdown`` orders values: most files first, then by name."""
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
