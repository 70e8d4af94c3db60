"""Stage ``curate``: language, license and quality filters, run over Arrow batches on Ray Data."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows import tracking
from flows.config import Params
from ray_tasks.curate.privacy import CONTAMINATION, SUMMARY_KEYS, privacy_filters, privacy_stats, redact_kept
from flows.workspace import FILES, REJECTED, stage_dir
from ray_tasks.curate.stage import build_filters, split_annotated
from ray_tasks.curate.filters import apply_filters
from ray_tasks.executor import map_batches, ray_running
from ray_tasks.stats import curation_stats
from ray_tasks.tables import AtomicDir, read_table, write_json_atomic, write_parquet_atomic

STATS = "stats.json"


@flow(name="stage-curate")
def curate_flow(params: Params, parent_run_id: str | None = None) -> dict:
    log = get_run_logger()
    cfg = params.curate
    with tracking.stage_run("curate", params, parent_run_id):
        files = read_table(stage_dir("dedup") / FILES)
        privacy = privacy_filters(cfg, log)
        filters = build_filters(cfg.keep_license_types, cfg.drop_unknown_language, drop_vendor=cfg.drop_vendor,
                                malware=privacy.malware, decontamination=privacy.decontamination,
                                **cfg.quality.model_dump())
        with ray_running(params.ray.address, params.ray.num_cpus, params.ray.object_store_memory_mb):
            annotated = map_batches(files, apply_filters, cfg.batch_size, {"filters": filters})
            kept, rejected = split_annotated(annotated)
            stats = curation_stats(files, kept, rejected)  # the filters' account, before redaction
            kept, pii_counts = redact_kept(kept, cfg)  # PII in kept files, on the same Ray batches
        extra, contamination = privacy_stats(annotated, privacy, pii_counts, kept)
        stats.update(extra)
        with AtomicDir(stage_dir("curate")) as out:
            write_parquet_atomic(kept, out / FILES)
            write_parquet_atomic(rejected, out / REJECTED)
            write_parquet_atomic(contamination, out / CONTAMINATION)
            write_json_atomic(stats, out / STATS)
        tracking.publish_metrics("curate", summary(stats), table_rows=table_rows(stats))
        publish_plots(stats, stage_dir("curate") / STATS)
        log.info("curate: kept %d of %d files", kept.num_rows, files.num_rows)
    return summary(stats)


def summary(stats: dict) -> dict:
    """The figures DVC and MLflow track (the full account stays in stats.json)."""
    keys = ("files_in", "bytes_in", "files_kept", "bytes_kept", "files_rejected", "bytes_rejected", "kept_vendor_files")
    return {
        **{k: stats[k] for k in keys},
        **{k: stats[k] for k in SUMMARY_KEYS if k in stats},
        "rejected_by_reason": {k: v["files"] for k, v in stats["rejected_by_reason"].items()},
        "kept_by_license_type": {k: v["files"] for k, v in stats["kept_by_license_type"].items()},
        "kept_by_language": {k: v["files"] for k, v in list(stats["kept_by_language"].items())[:20]},
    }


def table_rows(stats: dict) -> list[dict]:
    """One row per (what, value) with files and bytes: the Prefect table artifact."""
    rows = [{"group": "total", "value": "kept", "files": stats["files_kept"], "bytes": stats["bytes_kept"]},
            {"group": "total", "value": "rejected", "files": stats["files_rejected"], "bytes": stats["bytes_rejected"]}]
    for group in ("rejected_by_reason", "kept_by_license_type", "kept_by_language"):
        rows += [{"group": group, "value": k, **v} for k, v in stats[group].items()]
    return rows


def publish_plots(stats: dict, stats_file) -> None:
    import tempfile
    from pathlib import Path

    import mlflow

    from flows import plots

    if not mlflow.active_run():
        return
    mlflow.log_artifact(str(stats_file))
    with tempfile.TemporaryDirectory() as tmp:
        if stats["kept_by_language"]:
            mlflow.log_artifact(str(plots.language_distribution(
                stats["kept_by_language"], "curate: kept files by language", Path(tmp) / "languages.png")))
        reasons = {k: v["files"] for k, v in stats["rejected_by_reason"].items()}
        if reasons:
            mlflow.log_artifact(str(plots.bar_chart(reasons, "curate: files rejected by reason", Path(tmp) / "rejected_by_reason.png")))
