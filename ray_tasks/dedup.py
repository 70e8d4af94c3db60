"""Exact deduplication by content hash.

Which copy survives follows The Stack v2's priority (stack_v2_curation.md §3.8):
permissively licensed repositories first, then stars and forks when the source
has them, then a deterministic key (repo_name, path) so reruns agree.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from ray_tasks.tables import rejected_from

_LICENSE_RANK = {"permissive": 0, "no_license": 1, "non_permissive": 2}


def exact_dedup(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(kept, rejected): one row per sha256; rejected rows name the kept copy in ``detail``."""
    if table.num_rows == 0:
        return table, rejected_from(table, "dedup", [])
    order = _priority_order(table)
    ranked = table.take(order)
    shas = ranked.column("sha256").to_pylist()
    first_of: dict[str, int] = {}
    keep_idx: list[int] = []
    drop_idx: list[int] = []
    detail: list[str] = []
    repos = ranked.column("repo_name").to_pylist()
    paths = ranked.column("path").to_pylist()
    for i, sha in enumerate(shas):
        if sha in first_of:
            drop_idx.append(i)
            j = first_of[sha]
            detail.append(f"{repos[j]}/{paths[j]}")
        else:
            first_of[sha] = i
            keep_idx.append(i)
    # Kept rows go back to input order so the table stays grouped by repository.
    kept_original = sorted(order[i] for i in keep_idx)
    kept = table.take(pa.array(kept_original, pa.int64()))
    rejected = rejected_from(ranked.take(pa.array(drop_idx, pa.int64())), "dedup", ["exact_duplicate"] * len(drop_idx), detail)
    return kept, rejected


def _priority_order(table: pa.Table) -> list[int]:
    n = table.num_rows
    lic = [_LICENSE_RANK.get(t, 3) for t in table.column("license_type").to_pylist()] if "license_type" in table.column_names else [0] * n
    stars = _neg(table, "star_events_count", n)
    forks = _neg(table, "fork_events_count", n)
    repos = table.column("repo_name").to_pylist()
    paths = table.column("path").to_pylist()
    return sorted(range(n), key=lambda i: (lic[i], stars[i], forks[i], repos[i], paths[i]))


def _neg(table: pa.Table, col: str, n: int) -> list[int]:
    if col not in table.column_names:
        return [0] * n
    return [-(v or 0) for v in pc.fill_null(table.column(col), 0).to_pylist()]
