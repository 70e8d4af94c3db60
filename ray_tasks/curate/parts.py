"""The curate stage over a partitioned dataset: one unit of work per input part, resumable, with
the memory of a few parts whatever the input's size.

    run = curate_dataset("data/dedup/files", out_dir, cfg, use_ray, work=".starflow/curate", log=log)

Every filter, the malware scan, decontamination and redaction look at one file at a time, so
curating a part on its own (``stage.curate_table``) and concatenating gives what the whole
table gives; the accounts add up (``stats.merge_accounts``). Output part i comes from input
part i (parts hold whole repositories, so they stay whole here too).

Where it runs: a Ray task per part, at most ``curate.max_in_flight`` submitted and not yet
finished, or part after part in this process; the same tables either way. A part is streamed:
read batch by batch (``curate.batch_size`` rows of the part), each batch curated (its
repositories' results, below) and its kept rows written to the part's output as they come (row
groups of about ``KEPT_ROW_GROUP_BYTES``), so a worker holds a row group, a batch and the
repository it curates (the batches a repository spans), not the part, and the driver holds only
the parts' small results (rejected rows, contamination rows, accounts): memory does not grow with
the input, nor with its parts' size. A task reads its part and writes its
output part itself, like dedup's (ray_tasks/datasets.py): on a cluster of several machines the
workspace's ``data/`` and ``.starflow/`` must be on storage every node sees.

Resume and incremental runs, at two grains. Each finished part is kept in the work folder
(``work/parts/<key>/``, written under a temporary name and renamed, its ``done.json`` naming the
kept part's rows, bytes and sha256, holding the part's account and listing its repositories'
keys), under a key that digests the input part's sha256 (from the input's manifest), the params,
the code of the stage and what the malware and decontamination steps were built from. A part
whose key misses (new, or changed because repositories were added to it or edited) is curated
repository by repository (ray_tasks/curate/repo_cache.py): each repository's results are kept
in ``work/repos/`` under a key of its rows and the same digest, so only repositories never seen
before are curated, the rest of the part is rebuilt from their results, byte for byte what
curating it all gives. A run killed mid-way re-runs only the parts it had not finished, and in
those only the repositories it had not stored; a re-run of a finished run curates nothing and
only assembles. The output appears whole in ``out`` (the flow's ``AtomicDir``): ``files/``
(parts hard-linked from the work folder, or copied where links are not possible;
``_manifest.json`` last), ``rejected.parquet`` and ``contamination.parquet`` (streamed part by
part) and ``stats.json``. Work entries of other keys (parts and repositories the run did not
use) are removed after a successful run, and ``work/last_run.json`` says what it computed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ray_tasks.curate.decontaminate import REPORT_SCHEMA
from ray_tasks.curate.params import CurateParams
from ray_tasks.curate.repo_cache import RepoStore, batches_with_results, rows_digest
from ray_tasks.curate.stage import CurateSteps, build_steps, curate_rows, curate_table, replay
from ray_tasks.curate.stats import merge_accounts
from ray_tasks.datasets import PartInfo, PartStream, is_dataset, open_part, part_name, read_manifest, write_manifest
from ray_tasks.tables import REJECTED_SCHEMA, write_json_atomic, write_parquet_atomic

REJECTED = "rejected.parquet"
CONTAMINATION = "contamination.parquet"
STATS = "stats.json"
DONE = "done.json"
LAST_RUN = "last_run.json"
KEPT_ROW_GROUP_BYTES = 16 << 20
"""Kept rows are buffered to about this many bytes (Arrow) per row group of an output part."""
EXECUTION_ONLY = {"max_in_flight"}
"""Params that change where and how fast, never what: left out of the parts' keys."""

Log = logging.Logger | logging.LoggerAdapter


@dataclass(frozen=True)
class InputPart:
    """One part of the input: where to read it and what identifies its bytes."""

    address: str
    sha256: str
    rows: int


@dataclass
class CurateRun:
    """What a run did, beside its outputs."""

    stats: dict
    """stats.json: the merged account."""
    parts: int
    reused: int
    """Parts taken from the work folder (finished by an earlier, maybe interrupted, run)."""
    repositories: int = 0
    repositories_computed: int = 0
    """Repositories curated by this run (the others' results came from the work folder)."""

    def counts(self) -> dict[str, int]:
        """``last_run.json``: what was computed and what reused."""
        return {"parts": self.parts, "parts_reused": self.reused, "parts_computed": self.parts - self.reused,
                "repositories": self.repositories, "repositories_computed": self.repositories_computed,
                "repositories_reused": self.repositories - self.repositories_computed}


# --------------------------------------------------------------------------- the stage
def curate_dataset(src: str | Path, out: Path, cfg: CurateParams, use_ray: bool, work: Path | None = None,
                   log: Log | None = None, files_name: str = "files") -> CurateRun:
    """Curate every part of the dataset ``src`` into ``out`` (``files_name``/, rejected.parquet,
    contamination.parquet, stats.json); ``work`` keeps finished parts and repositories for a
    resumed or incremental run, and ``last_run.json`` (``CurateRun.counts``)."""
    log = log or logging.getLogger(__name__)
    parts, schema = input_parts(src)
    steps = build_steps(cfg, log)
    out_schema = curate_table(schema.empty_table(), steps, cfg).kept.schema
    base = run_key(cfg, steps)
    keys = [digest([base, p.sha256]) for p in parts]
    with _store(work) as store:
        records = {i: r for i, k in enumerate(keys) if (r := store.load(k)) is not None}
        todo = [i for i in range(len(parts)) if i not in records]
        log.info("curate: %d parts, %d finished by an earlier run, %d to curate (%s)", len(parts), len(records),
                 len(todo), "on Ray" if use_ray and todo else "in this process")
        jobs = [(i, store.begin(keys[i])) for i in todo]
        units = (str(store.repos.root), base)
        run = _on_ray if use_ray and todo else _here
        computed = 0
        for n, (i, folder, done) in enumerate(run(jobs, parts, steps, cfg, out_schema, units), 1):
            records[i] = store.finish(keys[i], folder, done)
            computed += done.computed
            log.info("curate: part %d/%d done (%d of %d files kept; %d of %d repositories curated)", n, len(todo),
                     done.kept.rows, parts[i].rows, done.computed, len(done.repositories))
        ordered = [records[i] for i in range(len(parts))]
        stats = assemble(out, files_name, [store.path(k) for k in keys], ordered, out_schema)
        repositories = [key for r in ordered for key in r.get("repositories", [])]
        result = CurateRun(stats, len(parts), len(parts) - len(todo), len(repositories), computed)
        store.prune(set(keys), set(repositories))
        if work is not None:
            write_json_atomic(result.counts(), Path(work) / LAST_RUN)
    log.info("curate: %d parts, %d reused, %d computed: %d of %d repositories computed", result.parts, result.reused,
             result.parts - result.reused, result.repositories_computed, result.repositories)
    return result


def input_parts(src: str | Path) -> tuple[list[InputPart], pa.Schema]:
    """The input's parts in order with their identities (from its manifest), and its schema; a
    single Parquet file is one part (identified by the sha256 of its bytes)."""
    if is_dataset(src):
        manifest = read_manifest(src)
        root = str(src).rstrip("/")
        return [InputPart(f"{root}/{p.name}", p.sha256, p.rows) for p in manifest.parts], manifest.schema
    path = Path(src)
    if path.is_dir():
        raise ValueError(f"{src}: not a complete dataset (a folder without a manifest)")
    if not path.is_file():
        raise ValueError(f"{src}: no such dataset or Parquet file")
    meta = pq.read_metadata(path)
    return [InputPart(str(path), _file_sha256(path), meta.num_rows)], meta.schema.to_arrow_schema()


def input_bytes(src: str | Path) -> int:
    """Content bytes of the input (its ``length_bytes`` column, read alone, part by part): what the
    executor choice is made on."""
    total = 0
    for part in input_parts(src)[0]:
        column = open_part(part.address).read(columns=["length_bytes"]).column("length_bytes")
        total += int(pc.sum(column).as_py() or 0)
    return total


@dataclass
class PartDone:
    """A curated part's small results (its kept rows are in its output part already)."""

    kept: PartInfo
    rejected: pa.Table
    contamination: pa.Table
    account: dict
    repositories: list[str]
    """The keys of the part's repositories' results (``work/repos/``), in order."""
    computed: int
    """How many of them this call curated (the others were in the store)."""


def curate_part(address: str, steps: CurateSteps, cfg: CurateParams, schema: pa.Schema, dest: str,
                repos: str, base: str) -> PartDone:
    """One part (a Ray task, or a call here), streamed: each batch's ``curate_table``, rebuilt from
    its repositories' results (``stage.replay``; the results from the store ``repos``, or curated
    and stored), the kept rows (in the output's schema, so every part of ``files/`` has the same
    one) written to part 0 of ``dest`` as they come, the batches' accounts merged in order."""
    pf = open_part(address)
    units = _Repositories(RepoStore(repos), base, steps, cfg, pf.schema_arrow)
    rejected, contamination, accounts = [], [], []
    buffer: list[pa.Table] = []
    with PartStream(dest, 0, schema) as out:
        for batch, rows in batches_with_results(pf.iter_batches(batch_size=cfg.batch_size), units.resolve, cfg.batch_size):
            curated = replay(batch, rows, steps, cfg)
            buffer.append(curated.kept.select(schema.names).cast(schema))
            rejected.append(curated.rejected)
            contamination.append(curated.contamination)
            accounts.append(curated.stats)
            if sum(t.nbytes for t in buffer) >= KEPT_ROW_GROUP_BYTES:
                out.write(pa.concat_tables(buffer))
                buffer = []
        if buffer:
            out.write(pa.concat_tables(buffer))
    if not accounts:  # an empty part: the account of no files
        accounts.append(curate_table(pf.schema_arrow.empty_table(), steps, cfg).stats)
    return PartDone(out.info, pa.concat_tables([REJECTED_SCHEMA.empty_table(), *rejected]),
                    pa.concat_tables([REPORT_SCHEMA.empty_table(), *contamination]), merge_accounts(accounts),
                    units.keys, units.computed)


class _Repositories:
    """A part's repositories' results: from the store when their key is there, else curated
    (``stage.curate_rows``, the missing repositories of a group at once) and stored."""

    def __init__(self, store: RepoStore, base: str, steps: CurateSteps, cfg: CurateParams, schema: pa.Schema):
        self.store, self.base, self.steps, self.cfg = store, base, steps, cfg
        self.schema = curate_rows(schema.empty_table(), steps, cfg).schema
        self.keys: list[str] = []
        self.computed = 0

    def resolve(self, units: list[pa.Table]) -> list[pa.Table]:
        keys = [digest([self.base, rows_digest(files)]) for files in units]
        self.keys += keys
        found = [self.store.load(key, self.schema) for key in keys]
        missing = [i for i, rows in enumerate(found) if rows is None or rows.num_rows != units[i].num_rows]
        if missing:
            # One call for all: each file's results are the same in whatever table it is curated.
            computed = curate_rows(pa.concat_tables([units[i] for i in missing]), self.steps, self.cfg).cast(self.schema)
            start = 0
            for i in missing:
                found[i] = computed.slice(start, units[i].num_rows)
                start += units[i].num_rows
                self.store.save(keys[i], found[i])
            self.computed += len(missing)
        return found


def _here(jobs: list[tuple[int, Path]], parts: list[InputPart], steps: CurateSteps, cfg: CurateParams,
          schema: pa.Schema, units: tuple[str, str]) -> Iterator[tuple[int, Path, PartDone]]:
    for i, folder in jobs:
        yield i, folder, curate_part(parts[i].address, steps, cfg, schema, str(folder), *units)


def _on_ray(jobs: list[tuple[int, Path]], parts: list[InputPart], steps: CurateSteps, cfg: CurateParams,
            schema: pa.Schema, units: tuple[str, str]) -> Iterator[tuple[int, Path, PartDone]]:
    """Parts as Ray tasks, at most ``cfg.max_in_flight`` submitted and not yet handed back (each
    task reads its part and writes its kept rows itself; what comes back is small)."""
    import ray

    # SPREAD: a task reads and writes its part itself, so data locality buys nothing, and Ray's
    # default (the node holding the largest argument, ``steps``: the driver's) put every part on the
    # head of a two-node cluster (seen in tests/ray_tasks/test_multinode.py).
    remote = ray.remote(curate_part).options(scheduling_strategy="SPREAD")
    steps_ref = ray.put(steps)
    queue = iter(jobs)
    pending: dict[Any, tuple[int, Path]] = {}

    def submit() -> bool:
        job = next(queue, None)
        if job is None:
            return False
        i, folder = job
        pending[remote.remote(parts[i].address, steps_ref, cfg, schema, str(folder), *units)] = job
        return True

    while len(pending) < cfg.max_in_flight and submit():
        pass
    while pending:
        [ref], _ = ray.wait(list(pending), num_returns=1)
        i, folder = pending.pop(ref)
        result = ray.get(ref)
        del ref
        yield i, folder, result
        submit()


# --------------------------------------------------------------------------- the output
def assemble(out: Path, files_name: str, done: list[Path], records: list[dict], schema: pa.Schema) -> dict:
    """Write the stage's outputs from the finished parts, in part order; returns stats.json."""
    files = out / files_name
    files.mkdir(parents=True, exist_ok=True)
    infos = []
    for i, (folder, record) in enumerate(zip(done, records)):
        _link_or_copy(folder / part_name(0), files / part_name(i))
        infos.append(PartInfo(part_name(i), **{k: record["kept"][k] for k in ("rows", "bytes", "sha256")}))
    write_manifest(files, infos, schema, prune=False)
    concat_parquet([f / REJECTED for f in done], out / REJECTED, REJECTED_SCHEMA)
    concat_parquet([f / CONTAMINATION for f in done], out / CONTAMINATION, REPORT_SCHEMA)
    stats = merge_accounts(r["account"] for r in records)
    write_json_atomic(stats, out / STATS)
    return stats


def concat_parquet(sources: list[Path], dest: Path, schema: pa.Schema) -> None:
    """The rows of ``sources`` in order, streamed into one file (a row group per non-empty source),
    written under a temporary name and renamed."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            wrote = False
            for src in sources:
                table = pq.read_table(src)
                if table.num_rows:
                    writer.write_table(table.cast(schema))
                    wrote = True
            if not wrote:
                writer.write_table(schema.empty_table())
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _link_or_copy(src: Path, dest: Path) -> None:
    """A hard link (no second copy of the kept content; nothing here ever writes a file in place),
    or a copy across file systems."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


# --------------------------------------------------------------------------- the work folder
class PartStore:
    """Finished parts under ``root/parts/<key>/``: the kept part, the rejected and contamination
    rows, and ``done.json`` (the kept part's PartInfo, the part's account, its repositories'
    keys); the repositories' results in ``repos`` (``root/repos/``)."""

    def __init__(self, root: Path):
        self.root = Path(root) / "parts"
        self.repos = RepoStore(Path(root) / "repos")

    def path(self, key: str) -> Path:
        return self.root / key

    def load(self, key: str) -> dict | None:
        done = self.path(key) / DONE
        if not done.is_file():
            return None
        return json.loads(done.read_text())

    def begin(self, key: str) -> Path:
        """The temporary folder a part's results are written into (by ``curate_part``, then ``finish``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root / f".{key}.{uuid.uuid4().hex[:8]}.tmp"

    def finish(self, key: str, tmp: Path, done: PartDone) -> dict:
        """Add the small results to ``tmp`` (``done.json`` last), then rename it to its key (atomic)."""
        try:
            write_parquet_atomic(done.rejected, tmp / REJECTED)
            write_parquet_atomic(done.contamination, tmp / CONTAMINATION)
            record = {"kept": asdict(done.kept), "account": done.account, "repositories": done.repositories,
                      "computed": done.computed}
            write_json_atomic(record, tmp / DONE)
            final = self.path(key)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return json.loads(json.dumps(record))  # as load() gives it back: the same account either way

    def prune(self, keep: set[str], repositories: set[str]) -> None:
        """Remove entries of other keys (earlier params or inputs), parts' and repositories', and
        leftovers of killed writes."""
        self.repos.prune(repositories)
        if not self.root.is_dir():
            return
        for entry in self.root.iterdir():
            if entry.name not in keep:
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)


class _store:
    """The work folder's store, or a temporary one (removed afterwards) when there is none."""

    def __init__(self, work: Path | None):
        self.work, self.tmp = work, None

    def __enter__(self) -> PartStore:
        if self.work is None:
            self.tmp = tempfile.TemporaryDirectory(prefix="starflow-curate-")
            return PartStore(Path(self.tmp.name))
        return PartStore(Path(self.work))

    def __exit__(self, *exc) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()


# --------------------------------------------------------------------------- keys
def digest(items: list) -> str:
    """sha256 of JSON-able items (anything else by its ``str``)."""
    return hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()


def run_key(cfg: CurateParams, steps: CurateSteps) -> str:
    """What every part's result depends on besides its bytes: params, the stage's code and the
    inputs of its malware and decontamination steps."""
    return digest([cfg.model_dump(exclude=EXECUTION_ONLY), code_digest(), steps_fingerprint(steps)])


def code_digest() -> str:
    """The source of the curate package and of the shared modules it runs: changed code is a new
    key, never a stale hit."""
    here = Path(__file__).resolve().parent
    files = sorted(here.glob("*.py")) + [here.parent / n for n in ("language.py", "stats.py", "tables.py", "datasets.py")]
    h = hashlib.sha256()
    for f in files:
        if f.is_file():
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def steps_fingerprint(steps: CurateSteps) -> list:
    """Which scanners run and on what (YARA rule bytes, the ClamAV database's files), and the
    benchmark strings decontamination matches."""
    out: list = []
    if steps.privacy.malware is not None:
        for scanner in steps.privacy.malware.scanners:
            entry: dict[str, Any] = {"name": scanner.name}
            for rule in getattr(scanner, "rule_files", ()):
                entry.setdefault("rules", []).append(_file_sha256(Path(rule)))
            database = getattr(scanner, "database", None) if scanner.name == "clamav" else None
            if scanner.name == "clamav":
                entry["database"] = _tree_stat(Path(database or "/var/lib/clamav"))
            out.append(entry)
    if steps.privacy.decontamination is not None:
        items = steps.privacy.decontamination.matcher.items
        out.append({"benchmarks": digest([[i.benchmark, i.item_id, i.field, i.text] for i in items])})
    return out


def _tree_stat(path: Path) -> list:
    files = sorted(path.rglob("*")) if path.is_dir() else [path] if path.exists() else []
    return [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files if f.is_file()]


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
