"""Stage ``dedup``: exact (repositories, files) and MinHash near-deduplication of the ingested files.

Outputs in ``data/dedup/``: ``files/`` (kept rows, a partitioned dataset: part k holds the kept
rows of ingest's part k), ``rejected.parquet`` (with the kept
copy in ``detail``), ``clusters.parquet`` (every member of every merged cluster) and
``index/`` (the LSH index that later batches are deduplicated against: ``starflow dedup
--index data/dedup/index``). The contract is ``ray_tasks/dedup/__init__.py``; the work is
``ray_tasks.dedup.stage.dedup``, on Ray or in this process as ``params.ray`` decides
(``executor_session``, ``ray_tasks/executor.py``), with the same outputs either way. The input
is opened by its parts' footers only (``open_dataset``); the stage reads it row group by row group
and ``write_kept_parts`` writes the kept rows part by part (a task per part), so this process
never holds the content.

Resume: the output, the LSH index inside it included, is built in a temporary folder renamed at
the end (``AtomicDir``), so a killed run leaves ``data/dedup`` as it was (its temp folder is removed
by the next run), and a re-run computes the same outputs from scratch: dedup is one global
decision over every part. What a re-run does not compute again is most of the work, the MinHash
signatures: they are kept by content hash in ``.starflow/work/dedup/signatures/`` (``sigcache.py``),
so a grown corpus signs only its new contents, with the same outputs byte for byte.
``.starflow/work/dedup/last_run.json`` says how many were computed and how many came from the cache.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from prefect import flow, get_run_logger

from flows import tracking
from flows.config import Params
from flows.workspace import FILES, REJECTED, stage_dir, work_dir
from ray_tasks.dedup.sigcache import SignatureCache
from ray_tasks.dedup.source import open_dataset
from ray_tasks.dedup.stage import DedupResult, dedup, write_kept_parts
from ray_tasks.executor import executor_session
from ray_tasks.tables import AtomicDir, FILE_COLUMNS, reason_counts, write_parquet_atomic

CLUSTERS = "clusters.parquet"
INDEX = "index"


def largest_clusters(clusters: pa.Table, top: int = 10) -> list[dict]:
    """The ``top`` largest clusters: id, size, the kept file and how the others were removed."""
    if clusters.num_rows == 0:
        return []
    sizes = clusters.group_by("cluster_id").aggregate([("path", "count")]).sort_by([("path_count", "descending"), ("cluster_id", "ascending")])
    kept = clusters.filter(clusters.column("kept"))
    kept_of = dict(zip(kept.column("cluster_id").to_pylist(),
                       (f"{r}/{p}" for r, p in zip(kept.column("repo_name").to_pylist(), kept.column("path").to_pylist()))))
    rows = []
    for cid, size in zip(sizes.column("cluster_id").to_pylist()[:top], sizes.column("path_count").to_pylist()[:top]):
        members = clusters.filter(pc.equal(clusters.column("cluster_id"), cid))
        reasons = reason_counts(members.filter(pc.invert(members.column("kept"))))
        rows.append({"cluster_id": cid, "size": size, "kept": kept_of.get(cid, ""),
                     "removed": ", ".join(f"{k}: {v}" for k, v in reasons.items())})
    return rows


def report_markdown(stats: dict, top: list[dict]) -> str:
    lines = ["# Dedup", "", "| files in | kept | exact removed (repo) | near removed | clusters | largest |",
             "|---|---|---|---|---|---|",
             f"| {stats['files_in']} | {stats['files_kept']} | {stats['exact_removed']} ({stats['exact_repo_removed']}) "
             f"| {stats['near_removed']} | {stats['clusters']} | {stats['largest_cluster']} |", "",
             "## Largest clusters", "", "| cluster | size | kept | removed |", "|---|---|---|---|"]
    lines += [f"| {r['cluster_id']} | {r['size']} | `{r['kept']}` | {r['removed']} |" for r in top]
    return "\n".join(lines) + "\n"


def write_outputs(result: DedupResult, out: Path, use_ray: bool) -> None:
    write_kept_parts(result, out / FILES, use_ray)
    write_parquet_atomic(result.rejected, out / REJECTED)
    write_parquet_atomic(result.clusters, out / CLUSTERS)


@flow(name="stage-dedup")
def dedup_flow(params: Params, parent_run_id: str | None = None) -> dict:
    log = get_run_logger()
    with tracking.stage_run("dedup", params, parent_run_id):
        files = open_dataset(stage_dir("ingest") / FILES, required=FILE_COLUMNS)
        n_bytes = files.content_bytes()
        with executor_session(params.ray, n_bytes) as use_ray, AtomicDir(stage_dir("dedup")) as out:
            log.info("dedup: %d files in %d parts, %d row groups, %.1f MB, %s", files.num_rows, len(files.files),
                     files.num_groups, n_bytes / 2**20,
                     "on Ray" if use_ray else "in this process")
            # The index is built fresh inside the new output folder: a full run, signatures from the cache.
            cache = SignatureCache.open(work_dir("dedup"), params.dedup, log)
            result = dedup(files, out / INDEX, params.dedup, use_ray=use_ray, log=log, signature_cache=cache)
            write_outputs(result, out, use_ray)
        stats = {
            **result.stats,
            "used_ray": int(use_ray),
            "files_rejected": result.rejected.num_rows,
            "duplicate_fraction": result.rejected.num_rows / max(files.num_rows, 1),
            "rejected_by_reason": reason_counts(result.rejected),
        }
        tracking.publish_metrics("dedup", stats)
        tracking.publish_markdown("dedup", report_markdown(stats, largest_clusters(result.clusters)))
        log.info("dedup: %s", stats)
    return stats
