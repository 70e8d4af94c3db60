"""Deduplication: exact (repositories by file tree, files by content hash), then MinHash near-dedup.

Which copy survives follows the seed's order (https://github.com/bigcode-project/bigcode-dataset/blob/main/near_deduplication/bigcode-v2/intra_dedup.py): license class
(permissive < no_license < non_permissive), stars, forks, latest revision, latest visit, then
(repo_name, path) so that every run agrees. The same order picks the surviving repository
of a group with identical file trees.

One formulation covers a first run and every incremental batch: the documents of the index
and of the new batch form one graph whose edges are "same content hash" and "verified
MinHash near-duplicate"; each connected component keeps its best member. Exact duplicates
share every band key, so this keeps the same files as "exact dedup, then near dedup on the
survivors", while signatures are computed only once per distinct content. A batch only
touches the components it joins, which is why its cost follows the batch and why the kept
set equals a full re-run's.

Memory: this process reads only the small columns (names, paths, hashes, ranking columns)
and holds per-file NumPy/Arrow arrays of them, ids, labels and edges; the content is read
by the map tasks (``scan_group`` here, ``lsh.sign_task``) from the row groups that hold
their rows, and the kept rows are written by streaming the input row group by row group
(``write_kept``). Peak memory follows a row group, not the corpus.

    source = open_dataset("data/ingest/files")                            # source.py: the parts, in order
    with executor_session(params.ray, source.content_bytes()) as use_ray:  # ray_tasks/executor.py
        result = dedup(source, index_dir, params.dedup, use_ray=use_ray)
        write_kept_parts(result, out / "files", use_ray)  # part k = kept rows of input part k
    result.rejected, result.clusters, result.superseded, result.stats     # write_kept: one file instead
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ray_tasks.datasets import PartInfo, PartStream, write_manifest
from ray_tasks.dedup import index as ix
from ray_tasks.dedup.lsh import connected_labels, near_duplicate_edges
from ray_tasks.dedup.params import DedupParams
from ray_tasks.dedup.sigcache import SignatureCache, content_keys
from ray_tasks.dedup.source import ParquetSource
from ray_tasks.dedup.tasks import gather, submit
from ray_tasks.progress import Progress
from ray_tasks.tables import REJECTED_SCHEMA, utf8_lengths

_LICENSE_RANK = {"permissive": 0, "no_license": 1, "non_permissive": 2}
# Stack v2 column names first, then common short names.
_ALIASES = {
    "stars": ("star_events_count", "stars"),
    "forks": ("fork_events_count", "forks"),
    "revision": ("revision_date", "committer_date"),
    "visit": ("visit_date",),
}
META_COLUMNS = ("sha256", "length_bytes", "license_type", *(a for names in _ALIASES.values() for a in names))
"""The input columns besides repo_name and path that this process reads (when present): never the content."""
PRIORITY_SORT = [("lic", "ascending"), ("stars", "descending"), ("forks", "descending"),
                 ("revision", "descending"), ("visit", "descending"), ("repo_name", "ascending"),
                 ("path", "ascending")]
PRIORITY_SCHEMA = pa.schema([("lic", pa.int8()), ("stars", pa.int64()), ("forks", pa.int64()),
                             ("revision", pa.int64()), ("visit", pa.int64()), ("repo_name", pa.string()),
                             ("path", pa.string())])
CLUSTER_SCHEMA = pa.schema([("cluster_id", pa.int64()), ("repo_name", pa.string()), ("path", pa.string()),
                            ("kept", pa.bool_()), ("reason", pa.string()), ("new", pa.bool_())])


@dataclass
class DedupResult:
    source: ParquetSource
    kept_mask: np.ndarray
    """Per input row: kept. ``write_kept`` writes those rows."""
    kept_names: pa.Table
    """repo_name, path of the kept rows, in input order."""
    rejected: pa.Table
    """Removed rows of the input (REJECTED_SCHEMA); ``detail`` names the kept copy."""
    clusters: pa.Table
    """Every member of each component with more than one member that this run touched."""
    superseded: pa.Table
    """Previously kept documents of the index that a better new copy replaces (incremental runs)."""
    stats: dict
    signature_cache: dict = field(default_factory=dict)
    """Signatures computed and taken from the cache by this run (``SignatureCache.finish``'s report):
    not in ``stats``, which are the same with a cold or a warm cache."""


# --------------------------------------------------------------------------- priority
def priority_table(table: pa.Table) -> pa.Table:
    """The seed's ranking columns, normalised: smaller sorts first under ``PRIORITY_SORT``."""
    n = table.num_rows
    cols = {}
    if "license_type" in table.column_names:
        lic = [_LICENSE_RANK.get(t, 3) for t in table.column("license_type").to_pylist()]
    else:
        lic = [0] * n
    cols["lic"] = pa.array(lic, pa.int8())
    for name, aliases in _ALIASES.items():
        col = next((table.column(a) for a in aliases if a in table.column_names), None)
        cols[name] = _as_int64(col, n)
    cols["repo_name"] = table.column("repo_name").cast(pa.string())
    cols["path"] = table.column("path").cast(pa.string())
    return pa.table(cols, schema=PRIORITY_SCHEMA)


def _as_int64(col, n: int) -> pa.Array:
    """Counts and dates as int64; a missing value ranks last (no stars, oldest date)."""
    if col is None:
        return pa.array(np.zeros(n, np.int64))
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        col = pc.cast(col, pa.timestamp("us"))
    if pa.types.is_date(col.type):
        col = pc.cast(col, pa.timestamp("us"))
    if pa.types.is_timestamp(col.type):
        col = pc.cast(col.cast(pa.timestamp("us")), pa.int64())
    return pc.fill_null(pc.cast(col, pa.int64()), np.iinfo(np.int64).min)


def best_first(prio: pa.Table) -> np.ndarray:
    """Row order, best copy first (the seed's order, then repo_name and path)."""
    return pc.sort_indices(prio, sort_keys=PRIORITY_SORT).to_numpy()


# --------------------------------------------------------------------------- hashes and repository trees
def sha256_hex(content: pa.Array | pa.ChunkedArray) -> pa.Array:
    """sha256 hex of each file's UTF-8 content (a null hashes as the empty text)."""
    out: list[str] = []
    for start in range(0, len(content), 4096):  # bounded memory: a few MB of Python strings at a time
        out += [hashlib.sha256((c or "").encode()).hexdigest() for c in content.slice(start, 4096).to_pylist()]
    return pa.array(out, pa.string())


def scan_group(source: ParquetSource, group: int, hash_content: bool) -> tuple[np.ndarray, pa.Array | None]:
    """Map: (UTF-8 bytes of each file, its sha256 hex when ``hash_content``) for one row group.

    The sizes cut the signature batches exactly as they were cut over the whole table."""
    content = source.read_group(group, ["content"]).column(0)
    return utf8_lengths(content).to_numpy(), sha256_hex(content) if hash_content else None


def repo_trees(prio: pa.Table, hashes: pa.Array) -> dict[str, str]:
    """sha256 of each repository's file tree: its sorted (path, content hash) pairs, as
    ``"".join(f"{path}\\0{hash}\\n")``. Vectorised in Arrow (one sort, one join), then one hashlib
    call per repository over a slice of one buffer: no Python object per file."""
    t = pa.table({"repo_name": prio.column("repo_name"), "path": prio.column("path"), "h": hashes})
    t = t.take(pc.sort_indices(t, sort_keys=[("repo_name", "ascending"), ("path", "ascending"), ("h", "ascending")]))
    lines = pc.binary_join_element_wise(t.column("path"), "\0", t.column("h"), "\n", "").cast(pa.large_string())
    lines = lines.combine_chunks() if isinstance(lines, pa.ChunkedArray) else lines
    offsets = np.frombuffer(lines.buffers()[1], np.int64)[lines.offset:lines.offset + len(lines) + 1]
    data = memoryview(lines.buffers()[2]) if lines.buffers()[2] is not None else memoryview(b"")
    names = t.column("repo_name").combine_chunks()
    starts = np.flatnonzero(np.concatenate([[True], pc.not_equal(names.slice(1), names.slice(0, len(names) - 1))
                                            .to_numpy(zero_copy_only=False)])) if len(names) else np.zeros(0, np.int64)
    ends = np.append(starts[1:], len(names))
    repos = names.take(pa.array(starts, pa.int64())).to_pylist()
    return {r: hashlib.sha256(data[offsets[s]:offsets[e]]).hexdigest() for r, s, e in zip(repos, starts, ends)}


def _repo_priority(prio: pa.Table) -> pa.Table:
    """One priority row per repository: its best license class, most stars/forks, latest dates."""
    # One thread: groups come out in first-seen order (threaded, Arrow's order varies run to run,
    # and the index's repos table with it; found comparing a two-node Ray run with a local one).
    g = prio.group_by("repo_name", use_threads=False).aggregate([("lic", "min"), ("stars", "max"), ("forks", "max"),
                                                                ("revision", "max"), ("visit", "max")])
    return pa.table({
        "lic": g.column("lic_min").cast(pa.int8()), "stars": g.column("stars_max"), "forks": g.column("forks_max"),
        "revision": g.column("revision_max"), "visit": g.column("visit_max"), "repo_name": g.column("repo_name"),
        "path": pa.array([""] * g.num_rows, pa.string()),
    }, schema=PRIORITY_SCHEMA)


REPOS_SCHEMA = pa.schema([*PRIORITY_SCHEMA, ("tree", pa.string()), ("removed", pa.bool_()), ("kept_repo", pa.string())])


def _repo_dedup(old_repos: pa.Table | None, new_repos: pa.Table) -> pa.Table:
    """Old and new repositories with ``removed`` (an identical tree exists in a better repository)."""
    allr = pa.concat_tables([t for t in (old_repos, new_repos) if t is not None])
    order = best_first(allr.select(PRIORITY_SCHEMA.names))
    trees = allr.column("tree").to_numpy(zero_copy_only=False)[order]
    _, first = np.unique(trees, return_index=True)
    best_of = dict(zip(trees[first], allr.column("repo_name").to_numpy(zero_copy_only=False)[order][first]))
    removed = np.ones(allr.num_rows, bool)
    removed[order[first]] = False
    kept_repo = [best_of[t] for t in allr.column("tree").to_pylist()]
    return allr.set_column(allr.schema.get_field_index("removed"), "removed", pa.array(removed)) \
               .set_column(allr.schema.get_field_index("kept_repo"), "kept_repo", pa.array(kept_repo, pa.string()))


# --------------------------------------------------------------------------- the run
@dataclass
class _Batch:
    """The new rows as the steps below need them: their small columns, never their content."""

    meta: pa.Table
    """repo_name, path and whichever of length_bytes and the ranking columns the input has."""
    prio: pa.Table
    hashes: pa.Array
    sizes: np.ndarray
    """UTF-8 bytes of each file's content."""
    ids: np.ndarray


@dataclass
class _Repos:
    table: pa.Table
    removed_new: np.ndarray
    """Per new row: its repository has an identical, better twin."""
    removed_old: np.ndarray
    """Per indexed row, after this batch."""


@dataclass
class _Pick:
    """The members of every component this batch touched, best first within each component."""

    members: np.ndarray
    labels: np.ndarray
    order: np.ndarray
    kept: np.ndarray
    reason: np.ndarray
    detail: pa.Array
    names: pa.Array
    paths: pa.Array


def dedup(source: ParquetSource, index_dir: str | Path, params: DedupParams, *, use_ray: bool,
          log: logging.Logger | logging.LoggerAdapter | None = None,
          signature_cache: SignatureCache | None = None) -> DedupResult:
    """Deduplicate ``source`` against itself and against the index at ``index_dir`` (created if absent).

    ``use_ray``: run the map and reduce tasks on Ray (up already; see ``executor_session``
    in ``ray_tasks/executor.py``) or in this process, with identical results. This process
    reads only the small columns; the content is read by the tasks, row group by row group.
    The index is updated in place: a new segment, then the per-document state, then meta.json.
    ``log`` receives the progress of the signatures (files, bytes, rate, ETA: ``ray_tasks/progress.py``).
    ``signature_cache`` (``sigcache.py``): signatures of contents signed before are taken from it and
    new ones added to it; every output is the same without it (``result.signature_cache`` has the counts)."""
    if source.num_rows == 0:
        raise ValueError(f"{source.files[0]}: no rows to deduplicate")
    root = Path(index_dir).absolute()  # tasks on other nodes write segments under it
    meta = ix.load_meta(root, params)
    params = params.model_copy(update={"num_partitions": meta.num_partitions})  # an index keeps its partitioning
    n_old = meta.n_docs
    state = ix.read_state(root, meta)
    old_docs = ix.read_docs(root, meta, columns=["content_hash", *PRIORITY_SCHEMA.names]) if n_old else None
    batch = _read_batch(source, n_old, use_ray)

    repos = _repositories(batch, ix.read_repos(root, meta), old_docs, state)
    exact, needs_sig = _exact_edges(batch, old_docs)
    seg_tmp = root / f".{ix.segment_name(meta)}.tmp"
    ix.ensure_clean(seg_tmp)
    sig_rows = np.flatnonzero(needs_sig)
    plan = signature_cache.plan(content_keys(batch.hashes.take(pa.array(sig_rows, pa.int64())))) \
        if signature_cache is not None else None
    with Progress("dedup: signatures", files=len(sig_rows), bytes=int(batch.sizes[sig_rows].sum()), logger=log) as progress:
        lsh, sig_counts = near_duplicate_edges(source, sig_rows, batch.ids[sig_rows], batch.sizes[sig_rows], seg_tmp,
                                               [root / s.name for s in meta.segments], params, use_ray, progress, plan)

    labels = connected_labels(np.concatenate([state["label"], batch.ids]), np.concatenate([exact, lsh]))
    changed_old = np.flatnonzero(repos.removed_old != state["repo_removed"])
    touched = np.unique(np.concatenate([labels[n_old:], labels[changed_old]]))
    repo_removed = np.concatenate([repos.removed_old, repos.removed_new])
    pick = _pick(labels, touched, repo_removed, batch, old_docs, n_old, repos.table)
    kept_all = np.concatenate([state["kept"], np.zeros(source.num_rows, bool)])
    kept_all[pick.members] = pick.kept

    result = _outputs(source, batch, pick, state, n_old, kept_all[n_old:])
    _commit(root, meta, seg_tmp, batch, {"label": labels, "kept": kept_all, "repo_removed": repo_removed}, repos.table)
    reasons = result.rejected.column("reason").to_numpy(zero_copy_only=False)
    counts = {r: int(np.sum(reasons == r)) for r in ("exact_duplicate_repo", "exact_duplicate", "near_duplicate")}
    sizes = np.bincount(np.searchsorted(touched, pick.labels), minlength=len(touched))
    result.stats = {
        "files_in": source.num_rows,
        "files_kept": int(result.kept_mask.sum()),
        "exact_removed": counts["exact_duplicate_repo"] + counts["exact_duplicate"],
        "exact_repo_removed": counts["exact_duplicate_repo"],
        "near_removed": counts["near_duplicate"],
        "superseded_in_index": result.superseded.num_rows,
        "signatures_computed": int(len(sig_rows)),
        "lsh_edges": int(len(lsh)),
        "clusters": int(np.sum(sizes > 1)),
        "largest_cluster": int(sizes.max()) if len(sizes) else 0,
        "index_docs": int(n_old + source.num_rows),
    }
    result.signature_cache = signature_cache.finish(plan, sig_counts) if signature_cache is not None else sig_counts
    return result


def _read_batch(source: ParquetSource, n_old: int, use_ray: bool) -> _Batch:
    """The small columns, read here; content sizes (and hashes when the input has no complete
    ``sha256`` column) from one map task per row group."""
    names = ["repo_name", "path", *[c for c in META_COLUMNS if source.has(c)]]
    meta = source.read_columns(names)
    has_sha = source.has("sha256") and meta.column("sha256").null_count == 0
    scans = gather(submit(scan_group, [(source, g, not has_sha) for g in range(source.num_groups)], use_ray), use_ray)
    sizes = np.concatenate([s for s, _ in scans]).astype(np.int64)
    hashes = meta.column("sha256").cast(pa.string()).combine_chunks() if has_sha else \
        pa.concat_arrays([h for _, h in scans])
    ids = np.arange(n_old, n_old + source.num_rows, dtype=np.int64)
    return _Batch(meta, priority_table(meta), hashes, sizes, ids)


def _repositories(batch: _Batch, old_repos: pa.Table | None, old_docs: pa.Table | None, state: dict) -> _Repos:
    """Repository-level exact dedup of the new repositories against each other and the indexed ones."""
    trees = repo_trees(batch.prio, batch.hashes)
    new = _repo_priority(batch.prio)
    new = pa.table({**{c: new.column(c) for c in PRIORITY_SCHEMA.names},
                    "tree": pa.array([trees[r] for r in new.column("repo_name").to_pylist()], pa.string()),
                    "removed": pa.array([False] * new.num_rows),
                    "kept_repo": pa.array([None] * new.num_rows, pa.string())}, schema=REPOS_SCHEMA)
    repos = _repo_dedup(old_repos, new)
    # Rows of indexed repositories come first: a new batch may reuse a repository name.
    n_old = old_repos.num_rows if old_repos is not None else 0
    rnames = repos.column("repo_name")
    rremoved = repos.column("removed").to_numpy(zero_copy_only=False)
    removed_new = rnames.slice(n_old).filter(pa.array(rremoved[n_old:]))
    removed_old = state["repo_removed"].copy()
    if n_old:
        was = old_repos.column("removed").to_numpy(zero_copy_only=False)
        newly = rnames.slice(0, n_old).filter(pa.array(rremoved[:n_old] & ~was))
        if len(newly):
            removed_old |= pc.is_in(old_docs.column("repo_name"), newly).to_numpy(zero_copy_only=False)
    removed = pc.is_in(batch.prio.column("repo_name"), removed_new).to_numpy(zero_copy_only=False)
    return _Repos(repos, removed, removed_old)
def _exact_edges(batch: _Batch, old_docs: pa.Table | None) -> tuple[np.ndarray, np.ndarray]:
    """(edges from each new file to the first copy of its content, rows that still need a signature)."""
    n_new, n_old = len(batch.ids), int(batch.ids[0])
    pos_old = _index_in(batch.hashes, old_docs.column("content_hash")) if old_docs is not None else np.full(n_new, -1)
    in_old = pos_old >= 0
    first_new = _index_in(batch.hashes, batch.hashes)
    dup_new = (first_new != np.arange(n_new)) & ~in_old
    edges = np.concatenate([np.stack([batch.ids[in_old], pos_old[in_old]], axis=1),
                            np.stack([batch.ids[dup_new], n_old + first_new[dup_new]], axis=1)]).astype(np.int64)
    return edges, ~in_old & ~dup_new


def _pick(labels: np.ndarray, touched: np.ndarray, repo_removed: np.ndarray, batch: _Batch,
          old_docs: pa.Table | None, n_old: int, repos: pa.Table) -> _Pick:
    """The best member of each touched component survives; files of removed repositories never do.

    A removed file is an exact duplicate when a better copy of its content is in its
    component, a near duplicate otherwise (the best copy of each content is the one that
    "exact, then near" dedup would have compared). All in NumPy and Arrow: a first run
    touches every document."""
    members = np.flatnonzero(np.isin(labels, touched))
    old_m, new_m = members[members < n_old], members[members >= n_old] - n_old
    mprio = pa.concat_tables([
        old_docs.select(PRIORITY_SCHEMA.names).take(pa.array(old_m, pa.int64())) if n_old else batch.prio.slice(0, 0),
        batch.prio.take(pa.array(new_m, pa.int64())),
    ])
    mhash = pa.concat_arrays([
        old_docs.column("content_hash").combine_chunks().take(pa.array(old_m, pa.int64())) if n_old
        else pa.array([], pa.string()), batch.hashes.take(pa.array(new_m, pa.int64()))])
    mlabel, mremoved = labels[members], repo_removed[members]
    order = best_first(mprio)
    order = order[np.lexsort((mremoved[order], mlabel[order]))]  # by component, eligible first, then priority
    lab_sorted = mlabel[order]
    first = np.concatenate([[True], lab_sorted[1:] != lab_sorted[:-1]]) if len(order) else np.zeros(0, bool)
    kept = np.zeros(len(members), bool)
    kept[order[first]] = True
    kept &= ~mremoved
    winner = order[first][np.searchsorted(lab_sorted[first], mlabel)] if len(order) else np.zeros(0, np.int64)
    # The best copy of each content within its component: the first (label, hash) in that order.
    eligible = order[~mremoved[order]]
    code = pc.dictionary_encode(mhash).indices.to_numpy().astype(np.int64)
    _, first_copy = np.unique(mlabel[eligible] * (int(code.max(initial=0)) + 1) + code[eligible], return_index=True)
    best_copy = np.zeros(len(members), bool)
    best_copy[eligible[first_copy]] = True
    reason = np.where(kept, "kept", np.where(mremoved, "exact_duplicate_repo",
                                             np.where(best_copy, "near_duplicate", "exact_duplicate")))
    names, paths = mprio.column("repo_name").combine_chunks(), mprio.column("path").combine_chunks()
    w = pa.array(winner, pa.int64())
    detail = pc.if_else(pa.array(mremoved), _kept_repo_of(names, repos),
                        pc.binary_join_element_wise(names.take(w), paths.take(w), "/"))
    return _Pick(members, mlabel, order, kept, reason, detail, names, paths)


def _kept_repo_of(names: pa.Array, repos: pa.Table) -> pa.Array:
    """The repository kept in place of each name's (the last row of a name wins: a new batch's)."""
    rnames = repos.column("repo_name").combine_chunks()[::-1]
    kept_repo = repos.column("kept_repo").combine_chunks()[::-1]
    return kept_repo.take(pc.index_in(names, value_set=rnames))


def _outputs(source: ParquetSource, batch: _Batch, pick: _Pick, state: dict, n_old: int,
             new_kept: np.ndarray) -> DedupResult:
    is_new = pick.members >= n_old
    rej = np.flatnonzero(is_new & ~pick.kept)
    rejected = _rejected(batch, pick.members[rej] - n_old, pick.reason[rej], pick.detail.take(pa.array(rej, pa.int64())))
    was_kept = np.zeros(len(pick.members), bool)
    was_kept[~is_new] = state["kept"][pick.members[~is_new]]
    sup = pa.array(np.flatnonzero(was_kept & ~pick.kept), pa.int64())
    superseded = pa.table({"repo_name": pick.names.take(sup), "path": pick.paths.take(sup),
                           "reason": pa.array(pick.reason[sup.to_numpy()], pa.string()), "detail": pick.detail.take(sup)})
    _, comp, sizes = np.unique(pick.labels, return_inverse=True, return_counts=True)
    cl = pick.order[sizes[comp[pick.order]] > 1]  # by cluster, the kept member first
    cla = pa.array(cl, pa.int64())
    clusters = pa.table({"cluster_id": pa.array(pick.labels[cl], pa.int64()), "repo_name": pick.names.take(cla),
                         "path": pick.paths.take(cla), "kept": pa.array(pick.kept[cl]),
                         "reason": pa.array(pick.reason[cl], pa.string()), "new": pa.array(is_new[cl])},
                        schema=CLUSTER_SCHEMA)
    kept_rows = pa.array(np.flatnonzero(new_kept), pa.int64())
    kept_names = batch.meta.select(["repo_name", "path"]).take(kept_rows)
    return DedupResult(source, new_kept, kept_names, rejected, clusters, superseded, {})


def _commit(root: Path, meta: ix.IndexMeta, seg_tmp: Path, batch: _Batch, state: dict, repos: pa.Table) -> None:
    """Index update: the new segment, the state and repositories under new names, then meta.json."""
    docs = pa.table({"id": pa.array(batch.ids), "content_hash": batch.hashes,
                     **{c: batch.prio.column(c) for c in PRIORITY_SCHEMA.names}})
    ix.write_docs(seg_tmp, docs)
    seg_name = ix.segment_name(meta)
    seg_final = root / seg_name
    if seg_final.exists():
        shutil.rmtree(seg_final)
    seg_tmp.rename(seg_final)
    k = len(meta.segments) + 1
    ix.write_state(root, state, k)
    ix.write_repos(root, repos, k)
    meta.segments.append(ix.Segment(seg_name, int(batch.ids[0]), len(batch.ids)))
    ix.save_meta(root, meta)
    ix.drop_stale(root, meta)


def _index_in(values: pa.Array, value_set: pa.Array) -> np.ndarray:
    """Position of each value's first occurrence in ``value_set``, -1 when absent."""
    return pc.fill_null(pc.index_in(values, value_set=value_set), -1).to_numpy(zero_copy_only=False).astype(np.int64)


def _rejected(batch: _Batch, rows: np.ndarray, reasons: np.ndarray, detail: pa.Array) -> pa.Table:
    idx = pa.array(rows, pa.int64())
    sub = batch.meta.take(idx)
    if "length_bytes" in sub.column_names:
        lengths = sub.column("length_bytes").cast(pa.int64())
    else:
        lengths = pa.array(batch.sizes[rows], pa.int64())
    return pa.table({
        "stage": pa.array(["dedup"] * len(rows), pa.string()),
        "reason": pa.array(reasons, pa.string()),
        "repo_name": sub.column("repo_name").cast(pa.string()),
        "path": sub.column("path").cast(pa.string()),
        "length_bytes": lengths,
        "sha256": batch.hashes.take(idx),
        "detail": detail.cast(pa.string()),
    }, schema=REJECTED_SCHEMA)


def write_kept_parts(result: DedupResult, root: str | Path, use_ray: bool) -> list[PartInfo]:
    """The kept rows as a partitioned dataset at ``root`` (``ray_tasks/datasets.py``): output part k
    is the kept rows of input file k, every input column, in input order (each input row group
    gives at most one output row group), a part with no kept rows an empty one. Each part is
    written by its own task, on Ray or here (it reads only its file's row groups), atomically;
    the manifest is written last. ``root`` should be inside an ``AtomicDir``."""
    source = result.source
    root = root if "://" in str(root) else str(Path(root).absolute())  # Ray workers may run elsewhere
    calls = []
    for k in range(len(source.files)):
        first, end = source.file_rows(k)
        calls.append((source, k, result.kept_mask[first:end], root))
    parts = gather(submit(write_kept_part, calls, use_ray), use_ray)
    write_manifest(root, parts, source.schema)
    return parts


def write_kept_part(source: ParquetSource, k: int, mask: np.ndarray, root: str) -> PartInfo:
    """Part ``k`` of the kept rows: input file ``k``'s row groups, filtered by ``mask`` (its rows)."""
    first = source.file_rows(k)[0]
    with PartStream(root, k, source.schema) as part:
        for g in source.file_groups(k):
            start = int(source.group_start[g]) - first
            group = source.read_group(g)
            keep = mask[start:start + group.num_rows]
            if keep.any():
                part.write(group.filter(pa.array(keep)))
    return part.info


def write_kept(result: DedupResult, path: str | Path) -> None:
    """The kept rows, every input column, in input order, streamed one input row group at a time
    (each becomes at most one row group of the output). Write inside an ``AtomicDir``
    (``ray_tasks/tables.py``): the file is complete only when the folder is renamed."""
    with pq.ParquetWriter(str(path), result.source.schema, compression="zstd") as writer:
        for first, group in result.source.iter_groups():
            mask = result.kept_mask[first:first + group.num_rows]
            if mask.any():
                writer.write_table(group.filter(pa.array(mask)))
