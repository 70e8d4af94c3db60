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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ray_tasks.datasets import PartInfo, part_name, write_manifest, write_part
from ray_tasks.ingest.groups import group_by_bytes, group_key, map_ordered, repo_key
from ray_tasks.ingest.license_scan import COUNTS as SCANCODE_COUNTS, prune_cache, result_cache
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
    """What a group of repositories gives: its rows of the three tables, in repository order, and
    how many rows of ``files`` and ``rejected`` each repository has (to take them apart again)."""

    files: pa.Table
    rejected: pa.Table
    repos: pa.Table
    files_per_repo: list[int] = field(default_factory=list)
    rejected_per_repo: list[int] = field(default_factory=list)
    scancode: dict[str, int] = field(default_factory=dict)
    """The task's ScanCode counters (``license_scan.COUNTS``: scans, cache hits), for the account."""

    def repositories(self) -> list["RepoRows"]:
        """Each repository's rows, in order (zero-copy slices)."""
        out, f, r = [], 0, 0
        for i, (nf, nr) in enumerate(zip(self.files_per_repo, self.rejected_per_repo)):
            out.append(RepoRows(self.files.slice(f, nf), self.rejected.slice(r, nr), self.repos.slice(i, 1)))
            f, r = f + nf, r + nr
        return out


@dataclass
class RepoRows:
    """One repository's rows of the three tables (``repos``: its one row)."""

    files: pa.Table
    rejected: pa.Table
    repos: pa.Table

    @property
    def reusable(self) -> bool:
        """Whether a later run may take these rows instead of recomputing them: not when a fetch
        failed (stack_v2, ``fetch_failures: reject``): the next run fetches those files again."""
        return "fetch_failed" not in self.rejected.column("reason").to_pylist()


def ingest_group(repositories: list[Repository], cfg: IngestParams, license_cache: str | None = None) -> GroupResult:
    """Read, decode and license-scan a group of repositories (one unit of parallel work), with
    ``cfg``'s size cap and opt-out list; rows in repository order, files in path order.
    ``license_cache``: the folder of ScanCode results (``license_scan.result_cache``), absolute."""
    with result_cache(license_cache):
        before = Counter(SCANCODE_COUNTS)
        repositories = load_rows(repositories, cfg.max_file_bytes, cfg.opt_out)
        kept: list[dict] = []
        rejected: list[dict] = []
        files_per_repo: list[int] = []
        rejected_per_repo: list[int] = []
        for repo in repositories:
            n_kept, n_rejected = len(kept), len(rejected)
            _ingest_repository(repo, cfg, kept, rejected)
            files_per_repo.append(len(kept) - n_kept)
            rejected_per_repo.append(len(rejected) - n_rejected)
        repos = repos_table(repositories)
        scancode = {k: SCANCODE_COUNTS[k] - before[k] for k in ("scans", "cache_hits")}
    return GroupResult(pa.Table.from_pylist(kept, schema=FILES_SCHEMA), rejected_table(rejected), repos,
                       files_per_repo, rejected_per_repo, scancode)


def _ingest_repository(repo: Repository, cfg: IngestParams, kept: list[dict], rejected: list[dict]) -> None:
    """One repository's kept and rejected rows, appended to ``kept`` and ``rejected``."""
    if opted_out(repo.name, cfg.opt_out):
        rejected += [_reject(f, "opt_out", None, "repository on ingest.opt_out") for f in _listed(repo)]
        return
    for raw in read_files(repo, cfg.max_file_bytes):
        decoded = decode(raw)
        data = raw.data if raw.data is not None else (raw.text.encode("utf-8", "surrogatepass") if raw.text is not None else None)
        sha = hashlib.sha256(data).hexdigest() if data is not None else None
        if decoded.text is None:
            rejected.append(_reject(raw, decoded.reason, sha, raw.error))
            continue
        kept.append(_row(repo, raw, decoded, sha))


def skips_table(source_skips: Iterable[RawFile]) -> pa.Table:
    """Rejected rows for files a source could not hand over (a broken Parquet file...)."""
    return rejected_table([_reject(s, s.error.split(":")[0], None, s.error) for s in source_skips])


FILES_DIR = "files"
"""The files table: a partitioned dataset (``ray_tasks/datasets.py``), one part per group."""

LAST_RUN = "last_run.json"
"""In the work folder: what the last run computed and reused (groups, repositories, bytes read,
ScanCode scans); not an output (``stats.json`` and the metrics stay the same however much was
reused)."""


def ingest_to(out_dir: Path, repositories: Sequence[Repository], cfg: IngestParams, use_ray: bool,
              source_skips: Iterable[RawFile] = (), progress: Progress | None = None,
              work_dir: Path | None = None, log: logging.Logger | logging.LoggerAdapter | None = None,
              plan: "IngestPlan | None" = None, license_cache: Path | None = None) -> dict:
    """The stage: every repository ingested in groups of about ``cfg.batch_bytes``, each group's
    rows written as it arrives: part i of the ``files/`` dataset is group i's kept files;
    ``rejected.parquet`` and ``repos.parquet`` are streamed in group order. Returns
    ``stats.json``'s content. ``out_dir`` should be an ``AtomicDir``: the outputs appear together
    or not at all.

    ``work_dir``: a ``GroupStore`` of finished groups and the rows of each of their repositories,
    which survives an interrupted run (kept outside the output, which appears only at the end). A
    group whose key is there is linked, not recomputed; otherwise only its repositories whose key
    (``groups.repo_key``) is not in the store are computed (one task per group, on Ray when
    ``use_ray``, at most ``cfg.max_in_flight`` at a time), and its part is written from its
    repositories' rows in order. So a killed run resumes where it stopped, a repeated run
    recomputes nothing, a grown source computes only its new repositories; outputs are
    byte-identical either way. ``license_cache``: a folder of ScanCode results by text
    (``license_scan.result_cache``), made absolute for the tasks. ``plan``: ``plan_groups``'s,
    when the caller needed it first (to size the executor on the bytes left to read)."""
    log = log or logging.getLogger(__name__)
    plan = plan if plan is not None else plan_groups(repositories, cfg, work_dir)
    log.info("ingest: %s", plan.summary(work_dir))
    cache = str(Path(license_cache).absolute()) if license_cache is not None else None
    if cache is not None:
        prune_cache(cache)
    computed = map_ordered(ingest_group, [plan.to_compute(i) for i in plan.todo],
                           {"cfg": cfg, "license_cache": cache}, use_ray=use_ray, max_in_flight=cfg.max_in_flight)
    account, run = IngestAccount(), RunAccount()
    parts: list[PartInfo] = []
    files_root = out_dir / FILES_DIR
    with ParquetStream(out_dir / "rejected.parquet", REJECTED_SCHEMA, cfg.row_group_bytes) as rejected, \
            ParquetStream(out_dir / "repos.parquet", REPOS_SCHEMA, cfg.row_group_bytes, empty_ok=False) as repos:
        for i, group in enumerate(plan.groups):
            fresh = next(computed) if plan.missing[i] else None
            part, info = _group_output(plan, i, fresh, files_root, cfg)
            parts.append(info)
            rejected.write(part.rejected)
            repos.write(part.repos)
            account.add(part.repos, part.files, part.rejected)
            run.add(plan, i, fresh)
            if progress is not None:
                progress.advance(files=part.files.num_rows + part.rejected.num_rows, repos=len(group),
                                 bytes=sum(r.size_hint for r in group))
        skipped = skips_table(source_skips)
        rejected.write(skipped)
        account.add(REPOS_SCHEMA.empty_table(), FILES_SCHEMA.empty_table(), skipped)
    if not parts:  # no repository at all: still a readable, empty dataset
        parts.append(write_part(files_root, 0, FILES_SCHEMA.empty_table()))
    write_manifest(files_root, parts, FILES_SCHEMA)
    log.info("ingest: %s", run.line())
    if plan.store is not None:
        plan.store.keep_only(set(plan.keys))
        write_json_atomic(run.counts, plan.store.root / LAST_RUN)
    return {**account.stats(), "rejected_examples": account.examples}


def _group_output(plan: "IngestPlan", i: int, fresh: GroupResult | None, files_root: Path,
                  cfg: IngestParams) -> tuple[GroupResult, PartInfo]:
    """Group ``i``'s rows and its part ``i`` in ``files_root``: linked from the store when the
    group is there whole; else its repositories' rows, computed (``fresh``) or stored, in
    order, written as the part (and kept in the store)."""
    store, key = plan.store, plan.keys[i]
    if plan.reused[i]:
        return store.get(key), store.link_files(key, files_root, i)
    part = plan.assemble(i, fresh)
    if store is None:
        return part, write_part(files_root, i, part.files, FILES_SCHEMA, cfg.row_group_bytes)
    store.put(key, plan.repo_keys[i], part, cfg.row_group_bytes)
    return part, store.link_files(key, files_root, i)


@dataclass
class IngestPlan:
    """The groups of a run, their keys and their repositories' keys, and what must be computed:
    for each group, the members (indices) whose rows are not in the work folder."""

    groups: list[list[Repository]]
    keys: list[str | None]
    repo_keys: list[list[str | None]]
    reused: list[bool]
    """Group i's part is in the store whole (linked, nothing read but its metrics columns)."""
    missing: list[list[int]]
    """Group i's members to compute (all of them without a store; none for a reused group)."""
    store: "GroupStore | None"

    @property
    def todo(self) -> list[int]:
        """Groups with a repository to compute (one task each)."""
        return [i for i, m in enumerate(self.missing) if m]

    @property
    def todo_bytes(self) -> int:
        """Bytes the repositories left to compute will read: what the executor choice is made on."""
        return sum(self.groups[i][j].size_hint for i in self.todo for j in self.missing[i])

    def to_compute(self, i: int) -> list[Repository]:
        return [self.groups[i][j] for j in self.missing[i]]

    def assemble(self, i: int, fresh: GroupResult | None) -> GroupResult:
        """Group i's rows from its repositories': ``fresh`` (the task's, for ``missing[i]``) and
        the store's for the others, concatenated in member order (what one task over the whole
        group gives, row for row)."""
        computed = iter(fresh.repositories() if fresh is not None else ())
        missing = set(self.missing[i])
        stored = self.store.read([k for j, k in enumerate(self.repo_keys[i]) if j not in missing]) \
            if len(missing) < len(self.groups[i]) else iter(())
        rows = [next(computed) if j in missing else next(stored) for j in range(len(self.groups[i]))]
        return GroupResult(_concat([r.files for r in rows], FILES_SCHEMA),
                           _concat([r.rejected for r in rows], REJECTED_SCHEMA),
                           _concat([r.repos for r in rows], REPOS_SCHEMA),
                           [r.files.num_rows for r in rows], [r.rejected.num_rows for r in rows],
                           fresh.scancode if fresh is not None else {})

    def summary(self, work_dir: Path | None) -> str:
        """What this run will do (the first half keeps the wording ``tests/test_resume.py`` reads)."""
        n_repos = sum(len(g) for g in self.groups)
        n_missing = sum(len(m) for m in self.missing)
        assembled = sum(1 for i, m in enumerate(self.missing) if not m and not self.reused[i])
        return (f"{len(self.groups)} groups, {sum(self.reused)} reused from {work_dir}, {len(self.todo)} to compute, "
                f"{assembled} assembled from stored repositories; {n_repos} repositories, "
                f"{n_repos - n_missing} reused, {n_missing} to compute ({self.todo_bytes / 1e6:.2f} MB to read)")


def _concat(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    """Tables computed and read back from Parquet as one (their schemas differ in metadata only)."""
    return pa.concat_tables([t.replace_schema_metadata(None).cast(schema) for t in tables]) if tables \
        else schema.empty_table()


def plan_groups(repositories: Sequence[Repository], cfg: IngestParams, work_dir: Path | None = None) -> IngestPlan:
    """Repositories grouped by ``cfg.batch_bytes``, each repository and group keyed
    (``groups.repo_key``: a stat of every file it reads; ``groups.group_key``) and looked up in the
    work folder's ``GroupStore``."""
    repositories = list(repositories)
    groups = group_by_bytes(repositories, [_read_bytes(r, cfg) for r in repositories], cfg.batch_bytes,
                            names=[r.name for r in repositories])
    if work_dir is None:
        return IngestPlan(groups, [None] * len(groups), [[None] * len(g) for g in groups], [False] * len(groups),
                          [list(range(len(g))) for g in groups], None)
    store = GroupStore(work_dir)
    repo_keys = [[repo_key(r, _repo_settings(r, cfg)) for r in g] for g in groups]
    keys = [group_key(rk, _group_settings(cfg)) for rk in repo_keys]
    reused = [store.complete(k) for k in keys]
    missing = [[] if reused[i] else [j for j, k in enumerate(rk) if not store.has_repo(k)]
               for i, rk in enumerate(repo_keys)]
    return IngestPlan(groups, keys, repo_keys, reused, missing, store)


def _repo_settings(repo: Repository, cfg: IngestParams) -> dict:
    """The settings that change a repository's rows (``groups.repo_key``): the size cap and whether
    it is opted out. Not ``batch_bytes``/``max_in_flight``/``row_group_bytes``: they change which
    group it is in, or the bytes of a part, never its rows."""
    return {"max_file_bytes": cfg.max_file_bytes, "opted_out": opted_out(repo.name, cfg.opt_out)}


def _group_settings(cfg: IngestParams) -> dict:
    """The settings that change a group's part beyond its members' rows (``groups.group_key``)."""
    return {"row_group_bytes": cfg.row_group_bytes}


class RunAccount:
    """What a run computed and reused (``LAST_RUN`` and the log): groups reused whole, assembled
    from stored repositories, or computed (some of their repositories); repositories computed
    and reused; the source bytes the computed ones read; the tasks' ScanCode counters."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(
            ("groups", "groups_reused", "groups_assembled", "groups_computed", "repositories",
             "repositories_reused", "repositories_computed", "bytes_read", "scancode_scans", "scancode_cache_hits"), 0)

    def add(self, plan: IngestPlan, i: int, fresh: GroupResult | None) -> None:
        c, missing = self.counts, plan.missing[i]
        c["groups"] += 1
        kind = "groups_reused" if plan.reused[i] else "groups_computed" if missing else "groups_assembled"
        c[kind] += 1
        c["repositories"] += len(plan.groups[i])
        c["repositories_computed"] += len(missing)
        c["repositories_reused"] += len(plan.groups[i]) - len(missing)
        c["bytes_read"] += sum(plan.groups[i][j].size_hint for j in missing)
        if fresh is not None:
            c["scancode_scans"] += fresh.scancode.get("scans", 0)
            c["scancode_cache_hits"] += fresh.scancode.get("cache_hits", 0)

    def line(self) -> str:
        c = self.counts
        return (f"computed {c['repositories_computed']} of {c['repositories']} repositories "
                f"({c['bytes_read'] / 1e6:.2f} MB read; ScanCode: {c['scancode_scans']} scans, "
                f"{c['scancode_cache_hits']} cached results); groups: {c['groups_reused']} reused, "
                f"{c['groups_assembled']} assembled, {c['groups_computed']} computed")


class GroupStore:
    """Finished groups on disk, one folder per group key: its ``files`` part (final bytes),
    ``rejected.parquet``, ``repos.parquet``, ``part.json`` (the part's rows, bytes, digest) and
    ``members.json`` (each repository's key, row counts, and whether its rows may be reused).

    It is also the store of finished repositories: a repository's rows are the rows of its
    group's tables at the offsets ``members.json`` gives, so any later group holding a repository
    of that key takes them from there (``read``) instead of recomputing them, and the rows are on
    disk once, not once per repository and again per part (at scale, millions of repositories
    would be millions of small files). A group's folder is built under a temporary name and
    renamed, so a folder that exists is complete (a run killed mid-write leaves only a ``.tmp``
    folder, removed on the next run). The final output links (hard link, else copy) the part
    instead of rewriting it. After a completed run only the groups it used are kept, so the store
    stays the size of one output: the groups a run writes hold every repository it used."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob(".*.tmp"):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
        self._where: dict[str, StoredRepo] = {}
        """Repository key -> where its reusable rows are (the first group found holding them)."""
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir() and not folder.name.startswith("."):
                self._index(folder.name)

    def complete(self, key: str) -> bool:
        """Group ``key`` is here with every repository's rows reusable: its part can be linked."""
        members = self._members(key)
        return members is not None and (self.root / key / "part.json").is_file() and all(m["reusable"] for m in members)

    def has_repo(self, key: str) -> bool:
        return key in self._where

    def put(self, key: str, repo_keys: Sequence[str], part: GroupResult, row_group_bytes: int) -> None:
        """Keep group ``key`` (members ``repo_keys``, rows ``part`` with its per-repository counts)."""
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", suffix=".tmp", dir=self.root))
        members = [{"key": k, "files": r.files.num_rows, "rejected": r.rejected.num_rows, "reusable": r.reusable}
                   for k, r in zip(repo_keys, part.repositories(), strict=True)]
        try:
            info = write_part(tmp / FILES_DIR, 0, part.files, FILES_SCHEMA, row_group_bytes)
            write_parquet_atomic(part.rejected.cast(REJECTED_SCHEMA), tmp / "rejected.parquet")
            write_parquet_atomic(part.repos.cast(REPOS_SCHEMA), tmp / "repos.parquet")
            write_json_atomic({"repositories": members}, tmp / "members.json")
            write_json_atomic(dataclasses.asdict(info), tmp / "part.json")
            final = self.root / key
            if final.exists():  # the same group with repositories to redo (failed fetches)
                self._where = {k: v for k, v in self._where.items() if v.group != key}
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self._index(key)

    def get(self, key: str) -> GroupResult:
        """A finished group's tables: the files table only with the columns the metrics need (its
        content stays on disk: the part itself is linked, not read)."""
        folder = self.root / key
        files = pq.read_table(folder / FILES_DIR / part_name(0), columns=["length_bytes", "src_encoding", "license_type"])
        return GroupResult(files, pq.read_table(folder / "rejected.parquet"), pq.read_table(folder / "repos.parquet"))

    def read(self, repo_keys: Sequence[str]) -> Iterator[RepoRows]:
        """The stored rows of each repository of ``repo_keys`` (all ``has_repo``), in order; runs of
        repositories consecutive in one stored group are read together (the row groups they
        span, once)."""
        for run in _runs([self._where[k] for k in repo_keys]):
            folder = self.root / run[0].group
            files = _read_rows(folder / FILES_DIR / part_name(0), run[0].files, run[-1].files_end)
            rejected = _read_rows(folder / "rejected.parquet", run[0].rejected, run[-1].rejected_end)
            repos = _read_rows(folder / "repos.parquet", run[0].index, run[-1].index + 1)
            for s in run:
                yield RepoRows(files.slice(s.files - run[0].files, s.files_end - s.files),
                               rejected.slice(s.rejected - run[0].rejected, s.rejected_end - s.rejected),
                               repos.slice(s.index - run[0].index, 1))

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

    def _members(self, key: str) -> list[dict] | None:
        """A group's ``members.json`` entries; None when absent or unreadable (an older layout)."""
        try:
            return json.loads((self.root / key / "members.json").read_text())["repositories"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _index(self, key: str) -> None:
        """Record where group ``key``'s reusable repositories are."""
        files = rejected = 0
        for index, m in enumerate(self._members(key) or []):
            if m["reusable"]:
                self._where.setdefault(m["key"], StoredRepo(key, index, files, files + m["files"], rejected,
                                                            rejected + m["rejected"]))
            files, rejected = files + m["files"], rejected + m["rejected"]


@dataclass(frozen=True)
class StoredRepo:
    """Where a repository's rows are in a stored group: its row in ``repos.parquet``, its row
    ranges ``[start, end)`` in the part and in ``rejected.parquet``."""

    group: str
    index: int
    files: int
    files_end: int
    rejected: int
    rejected_end: int


def _runs(where: list[StoredRepo]) -> list[list[StoredRepo]]:
    """``where`` cut into runs of consecutive repositories of one stored group."""
    runs: list[list[StoredRepo]] = []
    for s in where:
        if runs and runs[-1][-1].group == s.group and runs[-1][-1].index + 1 == s.index:
            runs[-1].append(s)
        else:
            runs.append([s])
    return runs


def _read_rows(path: Path, start: int, end: int) -> pa.Table:
    """Rows ``[start, end)`` of a Parquet file, reading only the row groups they are in."""
    pf = pq.ParquetFile(path)
    if start >= end:
        return pf.schema_arrow.empty_table()
    pieces, offset = [], 0
    for rg in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(rg).num_rows
        if offset < end and offset + n > start:
            lo = max(start - offset, 0)
            pieces.append(pf.read_row_group(rg).slice(lo, min(end - offset, n) - lo))
        offset += n
    return pa.concat_tables(pieces)


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
