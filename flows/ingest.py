"""Stage ``ingest``: sources -> ``data/ingest/files.parquet`` (+ rejected, repos, stats).

The contract is ``ray_tasks/ingest/__init__.py``; the work is ``ray_tasks.ingest.stage.ingest``
over the repositories ``ray_tasks.ingest.sources.repositories`` reads, in this process (reading
sources is I/O and ScanCode's license index is loaded once per process). This flow writes
``data/ingest`` and publishes the metrics.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from rich.progress import track

from flows import tracking
from flows.config import Params
from flows.workspace import FILES, REJECTED, stage_dir
from ray_tasks.ingest.sources import SourceSkips, repositories
from ray_tasks.ingest.stage import ingest, ingest_stats, repos_table
from ray_tasks.stats import examples
from ray_tasks.tables import AtomicDir, write_json_atomic, write_parquet_atomic


@flow(name="stage-ingest")
def ingest_flow(params: Params, parent_run_id: str | None = None) -> dict:
    log = get_run_logger()
    cfg = params.ingest
    with tracking.stage_run("ingest", params, parent_run_id):
        skips = SourceSkips()
        repos = list(track(repositories(cfg.sources, skips=skips), description="scan repositories", transient=True))
        log.info("ingesting %d repositories", len(repos))
        files, rejected = ingest(track(repos, description="ingest", transient=True), cfg, source_skips=skips.files)
        summary = repos_table(repos)
        stats = ingest_stats(summary, files, rejected)
        with AtomicDir(stage_dir("ingest")) as out:
            write_parquet_atomic(files, out / FILES)
            write_parquet_atomic(rejected, out / REJECTED)
            if repos:
                write_parquet_atomic(summary, out / "repos.parquet")
            write_json_atomic({**stats, "rejected_examples": examples(rejected)}, out / "stats.json")
        tracking.publish_metrics("ingest", stats)
        log.info("ingest: %s", stats)
    return stats
