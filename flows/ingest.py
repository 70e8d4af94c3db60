"""Stage ``ingest``: sources -> ``data/ingest/files.parquet`` (+ rejected, repos, stats)."""

from __future__ import annotations

import pyarrow as pa
from prefect import flow, get_run_logger
from rich.progress import track

from flows import tracking
from flows.config import Params
from flows.workspace import FILES, REJECTED, stage_dir
from ray_tasks.ingest.stage import ingest, repo_summary
from ray_tasks.ingest.sources import SourceSkips, repositories
from ray_tasks.stats import breakdown, examples
from ray_tasks.tables import AtomicDir, reason_counts, write_json_atomic, write_parquet_atomic


@flow(name="stage-ingest")
def ingest_flow(params: Params, parent_run_id: str | None = None) -> dict:
    log = get_run_logger()
    cfg = params.ingest
    with tracking.stage_run("ingest", params, parent_run_id):
        skips = SourceSkips()
        repos = list(track(repositories([s.model_dump() for s in cfg.sources], skips=skips),
                           description="scan repositories", transient=True))
        log.info("ingesting %d repositories", len(repos))
        files, rejected = ingest(track(repos, description="ingest", transient=True), cfg.max_file_bytes,
                                 opt_out=cfg.opt_out, source_skips=skips.files)
        summary = pa.Table.from_pylist(list(repo_summary(repos)))
        stats = {
            "repositories": len(repos),
            "files_seen": files.num_rows + rejected.num_rows,
            "files_kept": files.num_rows,
            "files_rejected": rejected.num_rows,
            "bytes_kept": int(sum(files.column("length_bytes").to_pylist())),
            "rejected_by_reason": reason_counts(rejected),
            "repositories_by_license_type": {k: v["files"] for k, v in breakdown(summary, "license_type").items()} if repos else {},
            "files_by_license_type": {k: v["files"] for k, v in breakdown(files, "license_type").items()},
            "non_utf8_files": int(sum(1 for e in files.column("src_encoding").to_pylist() if e != "UTF-8")),
        }
        with AtomicDir(stage_dir("ingest")) as out:
            write_parquet_atomic(files, out / FILES)
            write_parquet_atomic(rejected, out / REJECTED)
            if repos:
                write_parquet_atomic(summary, out / "repos.parquet")
            write_json_atomic({**stats, "rejected_examples": examples(rejected)}, out / "stats.json")
        tracking.publish_metrics("ingest", stats)
        log.info("ingest: %s", stats)
    return stats
