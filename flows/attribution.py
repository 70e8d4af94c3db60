"""Stage ``attribution``: the portrait and full-text index of the curated set, for ``starflow trace``.

The contract is ``ray_tasks/attribution/__init__.py``; the work is ``ray_tasks.attribution.stage.build``
(one process: hashing windows and indexing take seconds at the default scale). The previous
``data/attribution``, when present and extendable, is reused and only new files are indexed.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from flows import dvc_dag, tracking
from flows.config import Params
from flows.workspace import FILES, stage_dir
from ray_tasks.attribution.stage import build
from ray_tasks.tables import AtomicDir

LOCK = Path("dvc.lock")


@flow(name="stage-attribution")
def attribution_flow(params: Params, parent_run_id: str | None = None) -> dict:
    log = get_run_logger()
    with tracking.stage_run("attribution", params, parent_run_id):
        previous = stage_dir("attribution")
        with AtomicDir(previous) as out:
            stats = build(stage_dir("curate") / FILES, out, params.attribution,
                          previous=previous if previous.exists() else None, data_version=data_version())
        tracking.publish_metrics("attribution", stats)
        log.info("attribution: %d files (%d added), %d windows, %.1f MB index, %.2f s", stats["files"],
                 stats["files_added"], stats["windows"], (stats["portrait_bytes"] + stats["fulltext_bytes"]) / 2**20,
                 stats["build_s"])
    return stats


def data_version(lock: Path = LOCK) -> str | None:
    """The md5 DVC recorded for ``data/curate`` (the dataset version the index describes); None before any lock."""
    outs = dvc_dag.locked("curate", lock).get("outs", [])
    return next((out.get("md5") for out in outs if out.get("path") == "data/curate"), None)
