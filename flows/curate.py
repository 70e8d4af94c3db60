"""Stage ``curate``: language, license and quality filters, run over Arrow batches on Ray Data."""

from __future__ import annotations

from collections import Counter

from prefect import flow, get_run_logger

from flows import tracking
from flows.config import Params
from flows.workspace import FILES, REJECTED, stage_dir
from ray_tasks.curate import build_filters, split_annotated
from ray_tasks.filters import apply_filters
from ray_tasks.ray_exec import map_batches, ray_running
from ray_tasks.tables import AtomicDir, read_table, reason_counts, write_parquet_atomic


@flow(name="stage-curate")
def curate_flow(params: Params, parent_run_id: str | None = None) -> dict:
    log = get_run_logger()
    cfg = params.curate
    with tracking.stage_run("curate", params, parent_run_id):
        files = read_table(stage_dir("dedup") / FILES)
        filters = build_filters(cfg.keep_license_types, cfg.drop_unknown_language, **cfg.quality.model_dump())
        with ray_running(params.ray.address, params.ray.num_cpus, params.ray.object_store_memory_mb):
            annotated = map_batches(files, apply_filters, cfg.batch_size, {"filters": filters})
        kept, rejected = split_annotated(annotated)
        with AtomicDir(stage_dir("curate")) as out:
            write_parquet_atomic(kept, out / FILES)
            write_parquet_atomic(rejected, out / REJECTED)
        stats = {
            "files_in": files.num_rows,
            "files_kept": kept.num_rows,
            "files_rejected": rejected.num_rows,
            "bytes_kept": int(sum(kept.column("length_bytes").to_pylist())),
            "rejected_by_reason": reason_counts(rejected),
            "kept_by_language": dict(Counter(kept.column("language").to_pylist()).most_common(20)),
        }
        tracking.publish_metrics("curate", stats)
        _log_reason_chart(stats["rejected_by_reason"])
        log.info("curate: kept %d of %d files", kept.num_rows, files.num_rows)
    return stats


def _log_reason_chart(reasons: dict[str, int]) -> None:
    import tempfile
    from pathlib import Path

    import mlflow

    from flows import plots

    if reasons:
        with tempfile.TemporaryDirectory() as tmp:
            mlflow.log_artifact(str(plots.bar_chart(reasons, "curate: files rejected by reason", Path(tmp) / "rejected_by_reason.png")))
