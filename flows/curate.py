"""Stage ``curate``: license, language, quality, malware and benchmark filters, then PII redaction.

The contract is ``ray_tasks/curate/__init__.py``; the work is ``ray_tasks.curate.parts.curate_dataset``
(a unit per input part, on Ray or in this process as ``params.ray`` decides: ``executor_session``,
``ray_tasks/executor.py``, with the same outputs either way; finished parts and each
repository's results kept in ``.starflow/curate`` for a resumed or incremental run, which curates
only the repositories it has not seen; ``.starflow/curate/last_run.json`` says how many parts and
repositories it computed and reused). This flow names the folders, and publishes the metrics, a
Prefect table and MLflow plots.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows import tracking
from flows.config import Params
from flows.workspace import FILES, WORK, stage_dir
from ray_tasks.curate.parts import STATS, curate_dataset, input_bytes
from ray_tasks.curate.stats import metrics
from ray_tasks.executor import executor_session
from ray_tasks.tables import AtomicDir


@flow(name="stage-curate")
def curate_flow(params: Params, parent_run_id: str | None = None) -> dict:
    log = get_run_logger()
    with tracking.stage_run("curate", params, parent_run_id):
        src = stage_dir("dedup") / FILES
        # The input's size only matters to `auto` (a column of every part read for it).
        n_bytes = input_bytes(src) if params.ray.executor == "auto" else 0
        with executor_session(params.ray, n_bytes) as use_ray:
            log.info("curate: %.1f MB of files, %s", n_bytes / 2**20, "on Ray" if use_ray else "in this process")
            with AtomicDir(stage_dir("curate")) as folder:
                run = curate_dataset(src, folder, params.curate, use_ray, WORK / "curate", log, files_name=FILES)
        summary = metrics(run.stats)
        tracking.publish_metrics("curate", summary, table_rows=table_rows(run.stats))
        publish_plots(run.stats, stage_dir("curate") / STATS)
        log.info("curate: kept %d of %d files (%d parts, %d reused from an interrupted or earlier run; "
                 "%d of %d repositories curated, the others' results reused)", run.stats["files_kept"],
                 run.stats["files_in"], run.parts, run.reused, run.repositories_computed, run.repositories)
    return summary


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
