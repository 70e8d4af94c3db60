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

    with executor_session(params.ray, content_bytes(table)) as use_ray:     # ray_tasks/executor.py
        result = dedup(table, index_dir, params.dedup, use_ray=use_ray)
    result.kept, result.rejected, result.clusters, result.superseded, result.stats
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ray_tasks.dedup import index as ix
from ray_tasks.dedup.lsh import connected_labels, near_duplicate_edges
from ray_tasks.dedup.params import DedupParams
from ray_tasks.tables import REJECTED_SCHEMA, utf8_lengths

REQUIRED_COLUMNS = ("repo_name", "path", "content")
_LICENSE_RANK = {"permissive": 0, "no_license": 1, "non_permissive": 2}
# Stack v2 column names first, then common short names.
_ALIASES = {
    "stars": ("star_events_count", "stars"),
    "forks": ("fork_events_count", "forks"),
    "revision": ("revision_date", "committer_date"),
    "visit": ("visit_date",),
}
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
    kept: pa.Table
    """Kept rows of the input, in input order."""
    rejected: pa.Table
    """Removed rows of the input (REJECTED_SCHEMA); ``detail`` names the kept copy."""
    clusters: pa.Table
    """Every member of each component with more than one member that this run touched."""
    superseded: pa.Table
    """Previously kept documents of the index that a better new copy replaces (incremental runs)."""
    stats: dict


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


# --------------------------------------------------------------------------- size of the work
# --------------------------------------------------------------------------- helpers
def validate_input(table: pa.Table, origin: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"{origin}: missing required columns {missing} (need {list(REQUIRED_COLUMNS)})")


def content_hashes(table: pa.Table) -> pa.Array:
    """sha256 hex of each file: the table's ``sha256`` column when it has one."""
    if "sha256" in table.column_names and table.column("sha256").null_count == 0:
        return table.column("sha256").cast(pa.string()).combine_chunks()
    out: list[str] = []
    content = table.column("content")
    for start in range(0, table.num_rows, 4096):  # bounded memory: a few MB of Python strings at a time
        out += [hashlib.sha256((c or "").encode()).hexdigest() for c in content.slice(start, 4096).to_pylist()]
    return pa.array(out, pa.string())


def repo_trees(repo_names: list[str], paths: list[str], hashes: list[str]) -> dict[str, str]:
    """sha256 of each repository's file tree: its sorted (path, content hash) pairs."""
    rows: dict[str, list[tuple[str, str]]] = {}
    for r, p, h in zip(repo_names, paths, hashes):
        rows.setdefault(r, []).append((p, h))
    return {r: hashlib.sha256("".join(f"{p}\0{h}\n" for p, h in sorted(v)).encode()).hexdigest() for r, v in rows.items()}


def _repo_priority(prio: pa.Table) -> pa.Table:
    """One priority row per repository: its best license class, most stars/forks, latest dates."""
    g = prio.group_by("repo_name").aggregate([("lic", "min"), ("stars", "max"), ("forks", "max"),
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
    """The new rows, as the steps below need them."""

    table: pa.Table
    prio: pa.Table
    hashes: pa.Array
    ids: np.ndarray


@dataclass
class _Repos:
    table: pa.Table
    kept_repo_of: dict
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
    detail: list
    names: list
    paths: list


def dedup(table: pa.Table, index_dir: str | Path, params: DedupParams, *, use_ray: bool,
          origin: str = "input", progress: Callable[[str, int, int], None] | None = None) -> DedupResult:
    """Deduplicate ``table`` against itself and against the index at ``index_dir`` (created if absent).

    ``use_ray``: run the signature and bucket tasks on Ray (up already; see ``executor_session``
    in ``ray_tasks/executor.py``) or in this process, with identical results. The index is
    updated in place: a new segment, then the per-document state, then meta.json."""
    validate_input(table, origin)
    if table.num_rows == 0:
        raise ValueError(f"{origin}: no rows to deduplicate")
    root = Path(index_dir)
    meta = ix.load_meta(root, params)
    params = params.model_copy(update={"num_partitions": meta.num_partitions})  # an index keeps its partitioning
    n_old = meta.n_docs
    state = ix.read_state(root, meta)
    old_docs = ix.read_docs(root, meta, columns=["content_hash", *PRIORITY_SCHEMA.names]) if n_old else None
    prio = priority_table(table)
    batch = _Batch(table, prio, content_hashes(table), np.arange(n_old, n_old + table.num_rows, dtype=np.int64))

    repos = _repositories(batch, ix.read_repos(root, meta), old_docs, state)
    exact, needs_sig = _exact_edges(batch, old_docs)
    seg_tmp = root / f".{ix.segment_name(meta)}.tmp"
    ix.ensure_clean(seg_tmp)
    sig_rows = np.flatnonzero(needs_sig)
    lsh = near_duplicate_edges(table.column("content"), sig_rows, batch.ids[sig_rows], seg_tmp,
                               [root / s.name for s in meta.segments], params, use_ray, progress)

    labels = connected_labels(np.concatenate([state["label"], batch.ids]), np.concatenate([exact, lsh]))
    changed_old = np.flatnonzero(repos.removed_old != state["repo_removed"])
    touched = np.unique(np.concatenate([labels[n_old:], labels[changed_old]]))
    repo_removed = np.concatenate([repos.removed_old, repos.removed_new])
    pick = _pick(labels, touched, repo_removed, batch, old_docs, n_old, repos.kept_repo_of)
    kept_all = np.concatenate([state["kept"], np.zeros(table.num_rows, bool)])
    kept_all[pick.members] = pick.kept

    result = _outputs(batch, pick, state, n_old, kept_all[n_old:])
    _commit(root, meta, seg_tmp, batch, {"label": labels, "kept": kept_all, "repo_removed": repo_removed}, repos.table)
    reasons = result.rejected.column("reason").to_numpy(zero_copy_only=False)
    counts = {r: int(np.sum(reasons == r)) for r in ("exact_duplicate_repo", "exact_duplicate", "near_duplicate")}
    sizes = np.bincount(np.searchsorted(touched, pick.labels), minlength=len(touched))
    result.stats = {
        "files_in": table.num_rows,
        "files_kept": result.kept.num_rows,
        "exact_removed": counts["exact_duplicate_repo"] + counts["exact_duplicate"],
        "exact_repo_removed": counts["exact_duplicate_repo"],
        "near_removed": counts["near_duplicate"],
        "superseded_in_index": result.superseded.num_rows,
        "signatures_computed": int(len(sig_rows)),
        "lsh_edges": int(len(lsh)),
        "clusters": int(np.sum(sizes > 1)),
        "largest_cluster": int(sizes.max()) if len(sizes) else 0,
        "index_docs": int(n_old + table.num_rows),
    }
    return result


def _repositories(batch: _Batch, old_repos: pa.Table | None, old_docs: pa.Table | None, state: dict) -> _Repos:
    """Repository-level exact dedup of the new repositories against each other and the indexed ones."""
    names = batch.prio.column("repo_name").to_pylist()
    trees = repo_trees(names, batch.prio.column("path").to_pylist(), batch.hashes.to_pylist())
    new = _repo_priority(batch.prio)
    new = pa.table({**{c: new.column(c) for c in PRIORITY_SCHEMA.names},
                    "tree": pa.array([trees[r] for r in new.column("repo_name").to_pylist()], pa.string()),
                    "removed": pa.array([False] * new.num_rows),
                    "kept_repo": pa.array([None] * new.num_rows, pa.string())}, schema=REPOS_SCHEMA)
    repos = _repo_dedup(old_repos, new)
    # Rows of indexed repositories come first: a new batch may reuse a repository name.
    n_old = old_repos.num_rows if old_repos is not None else 0
    rnames = repos.column("repo_name").to_pylist()
    rremoved = repos.column("removed").to_numpy(zero_copy_only=False)
    removed_new = {r for r, x in zip(rnames[n_old:], rremoved[n_old:]) if x}
    removed_old = state["repo_removed"].copy()
    if n_old:
        was = old_repos.column("removed").to_numpy(zero_copy_only=False)
        newly = [r for r, a, b in zip(rnames[:n_old], was, rremoved[:n_old]) if b and not a]
        if newly:
            removed_old |= pc.is_in(old_docs.column("repo_name"), pa.array(newly, pa.string())).to_numpy(zero_copy_only=False)
    return _Repos(repos, dict(zip(rnames, repos.column("kept_repo").to_pylist())),
                  np.array([r in removed_new for r in names], bool), removed_old)


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
          old_docs: pa.Table | None, n_old: int, kept_repo_of: dict) -> _Pick:
    """The best member of each touched component survives; files of removed repositories never do.

    A removed file is an exact duplicate when a better copy of its content is in its
    component, a near duplicate otherwise (the best copy of each content is the one that
    "exact, then near" dedup would have compared)."""
    members = np.flatnonzero(np.isin(labels, touched))
    old_m, new_m = members[members < n_old], members[members >= n_old] - n_old
    mprio = pa.concat_tables([
        old_docs.select(PRIORITY_SCHEMA.names).take(pa.array(old_m, pa.int64())) if n_old else batch.prio.slice(0, 0),
        batch.prio.take(pa.array(new_m, pa.int64())),
    ])
    mhash = np.concatenate([
        old_docs.column("content_hash").to_numpy(zero_copy_only=False)[old_m] if n_old else np.array([], object),
        batch.hashes.to_numpy(zero_copy_only=False)[new_m]])
    mlabel, mremoved = labels[members], repo_removed[members]
    order = best_first(mprio)
    order = order[np.lexsort((mremoved[order], mlabel[order]))]  # by component, eligible first, then priority
    lab_sorted = mlabel[order]
    first = np.concatenate([[True], lab_sorted[1:] != lab_sorted[:-1]]) if len(order) else np.zeros(0, bool)
    kept = np.zeros(len(members), bool)
    kept[order[first]] = True
    kept &= ~mremoved
    winner = dict(zip(lab_sorted[first].tolist(), order[first].tolist()))
    best_copy = np.zeros(len(members), bool)
    seen: set[tuple[int, str]] = set()
    for i in order.tolist():
        key = (int(mlabel[i]), mhash[i])
        if key not in seen and not mremoved[i]:
            seen.add(key)
            best_copy[i] = True
    reason = np.where(kept, "kept", np.where(mremoved, "exact_duplicate_repo",
                                             np.where(best_copy, "near_duplicate", "exact_duplicate")))
    names, paths = mprio.column("repo_name").to_pylist(), mprio.column("path").to_pylist()
    detail = []
    for i in range(len(members)):
        w = winner[int(mlabel[i])]
        detail.append(kept_repo_of.get(names[i]) if mremoved[i] else f"{names[w]}/{paths[w]}")
    return _Pick(members, mlabel, order, kept, reason, detail, names, paths)


def _outputs(batch: _Batch, pick: _Pick, state: dict, n_old: int, new_kept: np.ndarray) -> DedupResult:
    is_new = pick.members >= n_old
    rej = np.flatnonzero(is_new & ~pick.kept)
    rejected = _rejected(batch.table, pick.members[rej] - n_old, pick.reason[rej], [pick.detail[i] for i in rej],
                         batch.hashes)
    was_kept = np.zeros(len(pick.members), bool)
    was_kept[~is_new] = state["kept"][pick.members[~is_new]]
    sup = np.flatnonzero(was_kept & ~pick.kept)
    superseded = pa.table({"repo_name": pa.array([pick.names[i] for i in sup], pa.string()),
                           "path": pa.array([pick.paths[i] for i in sup], pa.string()),
                           "reason": pa.array(pick.reason[sup].tolist(), pa.string()),
                           "detail": pa.array([pick.detail[i] for i in sup], pa.string())})
    _, comp, sizes = np.unique(pick.labels, return_inverse=True, return_counts=True)
    cl = pick.order[sizes[comp[pick.order]] > 1]  # by cluster, the kept member first
    clusters = pa.table({"cluster_id": pa.array(pick.labels[cl], pa.int64()),
                         "repo_name": pa.array([pick.names[i] for i in cl], pa.string()),
                         "path": pa.array([pick.paths[i] for i in cl], pa.string()),
                         "kept": pa.array(pick.kept[cl]), "reason": pa.array(pick.reason[cl].tolist(), pa.string()),
                         "new": pa.array(is_new[cl])}, schema=CLUSTER_SCHEMA)
    return DedupResult(batch.table.filter(pa.array(new_kept)), rejected, clusters, superseded, {})


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


def _rejected(table: pa.Table, rows: np.ndarray, reasons, detail, hashes: pa.Array) -> pa.Table:
    sub = table.take(pa.array(rows, pa.int64()))
    if "length_bytes" in sub.column_names:
        lengths = sub.column("length_bytes").cast(pa.int64())
    else:
        lengths = utf8_lengths(sub.column("content"))
    return pa.table({
        "stage": pa.array(["dedup"] * len(rows), pa.string()),
        "reason": pa.array(list(reasons), pa.string()),
        "repo_name": sub.column("repo_name").cast(pa.string()),
        "path": sub.column("path").cast(pa.string()),
        "length_bytes": lengths,
        "sha256": hashes.take(pa.array(rows, pa.int64())),
        "detail": pa.array(list(detail), pa.string()),
    }, schema=REJECTED_SCHEMA)
