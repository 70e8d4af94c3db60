"""Stage ``dedup``: exact deduplication of the ingested files by content hash."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows import tracking
from flows.config import Params
from flows.workspace import FILES, REJECTED, stage_dir
from ray_tasks.dedup import exact_dedup
from ray_tasks.tables import AtomicDir, read_table, reason_counts, write_parquet_atomic


@flow(name="stage-dedup")
def dedup_flow(params: Params, parent_run_id: str | None = None) -> dict:
    log = get_run_logger()
    with tracking.stage_run("dedup", params, parent_run_id):
        files = read_table(stage_dir("ingest") / FILES)
        kept, rejected = exact_dedup(files)
        with AtomicDir(stage_dir("dedup")) as out:
            write_parquet_atomic(kept, out / FILES)
            write_parquet_atomic(rejected, out / REJECTED)
        stats = {
            "files_in": files.num_rows,
            "files_kept": kept.num_rows,
            "files_rejected": rejected.num_rows,
            "duplicate_fraction": rejected.num_rows / max(files.num_rows, 1),
            "rejected_by_reason": reason_counts(rejected),
        }
        tracking.publish_metrics("dedup", stats)
        log.info("dedup: %s", stats)
    return stats
