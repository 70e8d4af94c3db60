"""Stage ``ingest``: sources -> ``data/ingest/files.parquet`` (+ rejected, repos)."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
from prefect import flow, get_run_logger
from rich.progress import track

from flows import tracking
from flows.config import Params
from flows.workspace import FILES, REJECTED, stage_dir
from ray_tasks.ingest import ingest, repo_summary
from ray_tasks.sources import repositories
from ray_tasks.tables import AtomicDir, reason_counts, write_parquet_atomic


@flow(name="stage-ingest")
def ingest_flow(params: Params, parent_run_id: str | None = None) -> dict:
    log = get_run_logger()
    with tracking.stage_run("ingest", params, parent_run_id):
        repos = list(repositories([s.model_dump() for s in params.ingest.sources]))
        log.info("ingesting %d repositories", len(repos))
        files, rejected = ingest(track(repos, description="ingest", transient=True), params.ingest.max_file_bytes)
        with AtomicDir(stage_dir("ingest")) as out:
            write_parquet_atomic(files, out / FILES)
            write_parquet_atomic(rejected, out / REJECTED)
            write_parquet_atomic(pa.Table.from_pylist(list(repo_summary(repos))), out / "repos.parquet")
        licenses = Counter(r.license_type for r in repos)
        stats = {
            "repositories": len(repos),
            "files_seen": files.num_rows + rejected.num_rows,
            "files_kept": files.num_rows,
            "files_rejected": rejected.num_rows,
            "bytes_kept": int(sum(files.column("length_bytes").to_pylist())),
            "rejected_by_reason": reason_counts(rejected),
            "repositories_by_license_type": dict(sorted(licenses.items())),
        }
        tracking.publish_metrics("ingest", stats)
        log.info("ingest: %s", stats)
    return stats
