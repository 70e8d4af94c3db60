"""Deduplication: exact (repositories by file tree, files by content hash), then MinHash near-dedup.

Which copy survives follows the seed's order (stack_v2_curation.md §5.2): license class
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

    result = dedup(table, index_dir, DedupConfig(), use_ray=True)
    result.kept, result.rejected, result.clusters, result.superseded, result.stats
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ray_tasks import lsh_index as ix
from ray_tasks.minhash import MinHashConfig
from ray_tasks.near_dedup import LshPlan, connected_labels, near_duplicate_edges
from ray_tasks.tables import REJECTED_SCHEMA, rejected_from

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


@dataclass(frozen=True)
class DedupConfig:
    minhash: MinHashConfig = field(default_factory=MinHashConfig)
    plan: LshPlan = field(default_factory=LshPlan)


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


# --------------------------------------------------------------------------- exact, skeleton API
def exact_dedup(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(kept, rejected): one row per sha256; rejected rows name the kept copy in ``detail``.

    File-level exact dedup alone (no repositories, no MinHash), kept for callers that need only that."""
    if table.num_rows == 0:
        return table, rejected_from(table, "dedup", [])
    order = best_first(priority_table(table))
    shas = table.column("sha256").to_numpy(zero_copy_only=False)[order]
    _, first_pos = np.unique(shas, return_index=True)
    keep_sorted = np.zeros(len(order), bool)
    keep_sorted[first_pos] = True
    first_of = {shas[p]: order[p] for p in first_pos}
    drop = order[~keep_sorted]
    names = table.column("repo_name").to_pylist()
    paths = table.column("path").to_pylist()
    detail = [f"{names[first_of[s]]}/{paths[first_of[s]]}" for s in shas[~keep_sorted]]
    kept = table.take(pa.array(np.sort(order[keep_sorted]), pa.int64()))
    rejected = rejected_from(table.take(pa.array(drop, pa.int64())), "dedup", ["exact_duplicate"] * len(drop), detail)
    return kept, rejected


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
def dedup(table: pa.Table, index_dir: str | Path, cfg: DedupConfig = DedupConfig(), use_ray: bool = False,
          origin: str = "input", progress: Callable[[str, int, int], None] | None = None) -> DedupResult:
    """Deduplicate ``table`` against itself and against the index at ``index_dir`` (created if absent).

    The index is updated in place: a new segment, then the per-document state, then meta.json."""
    validate_input(table, origin)
    if table.num_rows == 0:
        raise ValueError(f"{origin}: no rows to deduplicate")
    root = Path(index_dir)
    mh = cfg.minhash
    meta = ix.load_meta(root, mh, cfg.plan.num_partitions)
    plan = LshPlan(cfg.plan.batch_size, cfg.plan.batch_bytes, meta.num_partitions)  # an index keeps its partitioning
    n_old, n_new = meta.n_docs, table.num_rows
    state = ix.read_state(root, meta)
    old_docs = ix.read_docs(root, meta, columns=["content_hash", *PRIORITY_SCHEMA.names]) if n_old else None

    prio = priority_table(table)
    hashes = content_hashes(table)
    names, paths, hash_list = prio.column("repo_name").to_pylist(), prio.column("path").to_pylist(), hashes.to_pylist()

    # 1. repositories with identical trees
    trees = repo_trees(names, paths, hash_list)
    new_repos = _repo_priority(prio)
    new_repos = pa.table({**{c: new_repos.column(c) for c in PRIORITY_SCHEMA.names},
                          "tree": pa.array([trees[r] for r in new_repos.column("repo_name").to_pylist()], pa.string()),
                          "removed": pa.array([False] * new_repos.num_rows),
                          "kept_repo": pa.array([None] * new_repos.num_rows, pa.string())}, schema=REPOS_SCHEMA)
    old_repos = ix.read_repos(root, meta)
    repos = _repo_dedup(old_repos, new_repos) if new_repos.num_rows else (old_repos or new_repos)
    # Rows of old repositories come first: a new batch may reuse a repository name.
    n_old_repos = old_repos.num_rows if old_repos is not None else 0
    rnames = repos.column("repo_name").to_pylist()
    rremoved = repos.column("removed").to_numpy(zero_copy_only=False)
    kept_repo_of = dict(zip(rnames, repos.column("kept_repo").to_pylist()))
    removed_new_repos = {r for r, x in zip(rnames[n_old_repos:], rremoved[n_old_repos:]) if x}
    repo_removed_new = np.array([r in removed_new_repos for r in names], bool)
    repo_removed_old = state["repo_removed"].copy()
    if n_old_repos:
        was = old_repos.column("removed").to_numpy(zero_copy_only=False)
        newly = [r for r, a, b in zip(rnames[:n_old_repos], was, rremoved[:n_old_repos]) if b and not a]
        if newly:
            repo_removed_old |= pc.is_in(old_docs.column("repo_name"), pa.array(newly, pa.string())).to_numpy(zero_copy_only=False)
    changed_old = np.flatnonzero(repo_removed_old != state["repo_removed"])

    # 2. exact content: each new document links to the first copy of its content (old or new)
    new_ids = np.arange(n_old, n_old + n_new, dtype=np.int64)
    edges = []
    if n_old:
        pos_old = _index_in(hashes, old_docs.column("content_hash"))
        in_old = pos_old >= 0
    else:
        pos_old, in_old = np.full(n_new, -1, np.int64), np.zeros(n_new, bool)
    edges.append(np.stack([new_ids[in_old], pos_old[in_old]], axis=1))
    first_new = _index_in(hashes, hashes)
    dup_new = (first_new != np.arange(n_new)) & ~in_old
    edges.append(np.stack([new_ids[dup_new], n_old + first_new[dup_new]], axis=1))
    needs_sig = ~in_old & ~dup_new

    # 3. MinHash LSH on one document per new content
    seg_name = ix.segment_name(meta)
    seg_tmp = root / f".{seg_name}.tmp"
    ix.ensure_clean(seg_tmp)
    sig_rows = np.flatnonzero(needs_sig)
    old_segs = [root / s.name for s in meta.segments]
    lsh = near_duplicate_edges(table.column("content"), sig_rows, new_ids[sig_rows], seg_tmp, old_segs, mh, plan,
                               use_ray, progress)
    edges.append(lsh)
    all_edges = np.concatenate(edges).astype(np.int64) if edges else np.zeros((0, 2), np.int64)

    # 4. components: old labels plus the new edges
    parent = np.concatenate([state["label"], new_ids])
    labels = connected_labels(parent, all_edges)
    repo_removed = np.concatenate([repo_removed_old, repo_removed_new])
    touched = np.unique(np.concatenate([labels[n_old:], labels[changed_old]]))
    members = np.flatnonzero(np.isin(labels, touched))
    old_m, new_m = members[members < n_old], members[members >= n_old] - n_old

    # 5. the best member of each touched component survives; repositories removed above never do
    mprio = pa.concat_tables([
        old_docs.select(PRIORITY_SCHEMA.names).take(pa.array(old_m, pa.int64())) if n_old else prio.slice(0, 0),
        prio.take(pa.array(new_m, pa.int64())),
    ])
    mhash = np.concatenate([old_docs.column("content_hash").to_numpy(zero_copy_only=False)[old_m] if n_old else np.array([], object),
                            np.asarray(hash_list, dtype=object)[new_m]])
    mlabel = labels[members]
    mremoved = repo_removed[members]
    order = best_first(mprio)
    # stable regroup: by label, eligible before repo-removed, then priority
    order = order[np.lexsort((mremoved[order], mlabel[order]))]
    lab_sorted = mlabel[order]
    first_in_comp = np.concatenate([[True], lab_sorted[1:] != lab_sorted[:-1]]) if len(order) else np.zeros(0, bool)
    kept_member = np.zeros(len(members), bool)
    kept_member[order[first_in_comp]] = True
    kept_member &= ~mremoved
    winner_of_label = dict(zip(lab_sorted[first_in_comp].tolist(), order[first_in_comp].tolist()))
    # exact vs near: the best copy of each content hash inside a component is its "representative"
    rep = np.zeros(len(members), bool)
    seen: set[tuple[int, str]] = set()
    for i in order.tolist():
        key = (int(mlabel[i]), mhash[i])
        if key not in seen and not mremoved[i]:
            seen.add(key)
            rep[i] = True

    kept_all = np.concatenate([state["kept"], np.zeros(n_new, bool)])
    kept_all[members] = kept_member
    m_names = mprio.column("repo_name").to_pylist()
    m_paths = mprio.column("path").to_pylist()
    reason = np.where(kept_member, "kept", np.where(mremoved, "exact_duplicate_repo", np.where(rep, "near_duplicate", "exact_duplicate")))
    detail = []
    for i in range(len(members)):
        w = winner_of_label[int(mlabel[i])]
        detail.append(f"{m_names[w]}/{m_paths[w]}" if not mremoved[i] else kept_repo_of.get(m_names[i]))

    # 6. outputs
    is_new = members >= n_old
    new_kept = kept_all[n_old:]
    kept_tbl = table.filter(pa.array(new_kept))
    rej_rows = np.flatnonzero(is_new & ~kept_member)
    rej_input_rows = members[rej_rows] - n_old
    rejected = _rejected(table, rej_input_rows, reason[rej_rows], [detail[i] for i in rej_rows], hashes)
    old_member = ~is_new
    was_kept = np.zeros(len(members), bool)
    was_kept[old_member] = state["kept"][members[old_member]]
    sup = np.flatnonzero(was_kept & ~kept_member)
    superseded = pa.table({"repo_name": pa.array([m_names[i] for i in sup], pa.string()),
                           "path": pa.array([m_paths[i] for i in sup], pa.string()),
                           "reason": pa.array(reason[sup].tolist(), pa.string()),
                           "detail": pa.array([detail[i] for i in sup], pa.string())})
    comp = np.searchsorted(touched, mlabel)
    sizes = np.bincount(comp, minlength=len(touched))
    cl = order[sizes[comp[order]] > 1]  # by cluster, the kept member first
    clusters = pa.table({"cluster_id": pa.array(mlabel[cl], pa.int64()),
                         "repo_name": pa.array([m_names[i] for i in cl], pa.string()),
                         "path": pa.array([m_paths[i] for i in cl], pa.string()),
                         "kept": pa.array(kept_member[cl]), "reason": pa.array(reason[cl].tolist(), pa.string()),
                         "new": pa.array(is_new[cl])}, schema=CLUSTER_SCHEMA)

    # 7. commit the index: segment, state, repositories, then meta.json
    docs = pa.table({"id": pa.array(new_ids), "content_hash": hashes,
                     **{c: prio.column(c) for c in PRIORITY_SCHEMA.names}})
    ix.write_docs(seg_tmp, docs)
    seg_final = root / seg_name
    if seg_final.exists():
        shutil.rmtree(seg_final)
    seg_tmp.rename(seg_final)
    k = len(meta.segments) + 1
    ix.write_state(root, {"label": labels, "kept": kept_all, "repo_removed": repo_removed}, k)
    ix.write_repos(root, repos, k)
    meta.segments.append(ix.Segment(seg_name, n_old, n_new))
    ix.save_meta(root, meta)
    ix.drop_stale(root, meta)

    counts = {r: int(np.sum(rejected.column("reason").to_numpy(zero_copy_only=False) == r))
              for r in ("exact_duplicate_repo", "exact_duplicate", "near_duplicate")}
    stats = {
        "files_in": n_new,
        "files_kept": kept_tbl.num_rows,
        "exact_removed": counts["exact_duplicate_repo"] + counts["exact_duplicate"],
        "exact_repo_removed": counts["exact_duplicate_repo"],
        "near_removed": counts["near_duplicate"],
        "superseded_in_index": superseded.num_rows,
        "signatures_computed": int(len(sig_rows)),
        "lsh_edges": int(len(lsh)),
        "clusters": int(np.sum(sizes > 1)),
        "largest_cluster": int(sizes.max()) if len(sizes) else 0,
        "index_docs": int(n_old + n_new),
    }
    return DedupResult(kept_tbl, rejected, clusters, superseded, stats)


def _index_in(values: pa.Array, value_set: pa.Array) -> np.ndarray:
    """Position of each value's first occurrence in ``value_set``, -1 when absent."""
    return pc.fill_null(pc.index_in(values, value_set=value_set), -1).to_numpy(zero_copy_only=False).astype(np.int64)


def _rejected(table: pa.Table, rows: np.ndarray, reasons, detail, hashes: pa.Array) -> pa.Table:
    sub = table.take(pa.array(rows, pa.int64()))
    if "length_bytes" in sub.column_names:
        lengths = sub.column("length_bytes").cast(pa.int64())
    else:
        lengths = pc.binary_length(pc.cast(sub.column("content"), pa.large_binary())).cast(pa.int64())
    return pa.table({
        "stage": pa.array(["dedup"] * len(rows), pa.string()),
        "reason": pa.array(list(reasons), pa.string()),
        "repo_name": sub.column("repo_name").cast(pa.string()),
        "path": sub.column("path").cast(pa.string()),
        "length_bytes": lengths,
        "sha256": hashes.take(pa.array(rows, pa.int64())),
        "detail": pa.array(list(detail), pa.string()),
    }, schema=REJECTED_SCHEMA)
