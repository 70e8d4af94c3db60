"""References the dedup tests check the stage against; none of them runs in the stage itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ray_tasks.dedup.minhash import _FNV_OFFSET, _FNV_PRIME, _K1, _K2, _K3
from ray_tasks.dedup.params import DedupParams
from ray_tasks.dedup.source import ParquetSource
from ray_tasks.dedup.stage import DedupResult, best_first, dedup, priority_table
from ray_tasks.tables import rejected_from


def exact_dedup(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(kept, rejected): one row per sha256, the best copy by the stage's priority order;
    rejected rows name the kept copy in ``detail``. File-level exact dedup alone (no
    repositories, no MinHash): checks the priority order on its own."""
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


def token_hash(token: bytes) -> int:
    """The hash ``minhash._tokenize_kernel`` gives one token, in plain Python (FNV-1a, then splitmix64)."""
    mask = (1 << 64) - 1
    h = int(_FNV_OFFSET)
    for b in token:
        h = ((h ^ b) * int(_FNV_PRIME)) & mask
    x = h ^ ((len(token) * int(_K1)) & mask)
    x ^= x >> 30
    x = (x * int(_K2)) & mask
    x ^= x >> 27
    x = (x * int(_K3)) & mask
    return x ^ (x >> 31)


def candidate_probability(j: float, params: DedupParams) -> float:
    """Chance that two documents of Jaccard ``j`` share at least one band."""
    return 1.0 - (1.0 - j**params.rows) ** params.bands


def run_dedup(table: pa.Table, index_dir: Path, params: DedupParams, *, use_ray: bool = False,
              row_groups: int = 1, name: str | None = None) -> DedupResult:
    """The stage on ``table`` as it reads its input: written to a Parquet file beside ``index_dir``
    (``name``, default ``<index>.parquet``) in ``row_groups`` row groups of equal size."""
    path = Path(index_dir).parent / (name or f"{Path(index_dir).name}-{len(list(Path(index_dir).parent.glob('*.parquet')))}.parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=max(1, -(-table.num_rows // row_groups)))
    return dedup(ParquetSource.open([path]), index_dir, params, use_ray=use_ray)


def kept_rows(result: DedupResult, path: Path) -> pa.Table:
    """The kept rows as the stage writes them (``write_kept``), read back."""
    from ray_tasks.dedup.stage import write_kept

    write_kept(result, path)
    return pq.read_table(path)


def plain_repo_trees(repo_names: list[str], paths: list[str], hashes: list[str]) -> dict[str, str]:
    """The definition ``stage.repo_trees`` vectorises: sha256 of each repository's sorted (path, hash) lines."""
    import hashlib

    rows: dict[str, list[tuple[str, str]]] = {}
    for r, p, h in zip(repo_names, paths, hashes):
        rows.setdefault(r, []).append((p, h))
    return {r: hashlib.sha256("".join(f"{p}\0{h}\n" for p, h in sorted(v)).encode()).hexdigest() for r, v in rows.items()}
