"""Stage ``ingest``: sources -> ``data/ingest/files/`` (a partitioned dataset; + rejected, repos, stats).

The contract is ``ray_tasks/ingest/__init__.py``. This flow lists the repositories (cheap, in
this process), lets the executor choose Ray or this process for the input's size
(``ray_tasks.executor.executor_session``), runs ``ray_tasks.ingest.stage.ingest_to`` into an
``AtomicDir`` (groups of repositories read, decoded and license-scanned in parallel, written as
they arrive), publishes the metrics, and keeps a Prefect progress artifact (``ingest-progress``)
up to date from ``ray_tasks.progress``. Finished groups, and with them each repository's rows, are
kept in ``.starflow/work/ingest/`` (``workspace.work_dir``): a killed run resumes from them, a
repeated one reuses them all, a grown source computes only its new repositories
(``.starflow/work/ingest/last_run.json`` says what was computed). ScanCode's results are kept by
text in ``.starflow/work/scancode/`` (``license_scan.result_cache``): a license text scanned once,
in any repository, is not scanned again.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.context import FlowRunContext

from flows import tracking
from flows.config import Params
from flows.workspace import stage_dir, work_dir
from ray_tasks.executor import executor_session
from ray_tasks.ingest.sources import SourceSkips, repositories
from ray_tasks.ingest.stage import ingest_to, plan_groups
from ray_tasks.progress import Progress, Snapshot
from ray_tasks.tables import AtomicDir, write_json_atomic

PROGRESS_KEY = "ingest-progress"  # a keyed artifact keeps its history on the Artifacts page
SCANCODE_CACHE = "scancode"
"""``work_dir`` name of ScanCode's result cache (not under ingest's own: that folder keeps only the
groups of the last run, the cache keeps every text scanned)."""


@flow(name="stage-ingest")
def ingest_flow(params: Params, parent_run_id: str | None = None) -> dict:
    log = get_run_logger()
    cfg = params.ingest
    with tracking.stage_run("ingest", params, parent_run_id):
        skips = SourceSkips()
        repos = list(repositories(cfg.sources, skips=skips))
        n_files, n_bytes = sum(len(r.files) for r in repos), sum(r.size_hint for r in repos)
        log.info("ingesting %d repositories, %d files, %.1f MB", len(repos), n_files, n_bytes / 1e6)
        plan = plan_groups(repos, cfg, work_dir("ingest"))  # finished repositories are not read again
        with executor_session(params.ray, plan.todo_bytes) as use_ray, AtomicDir(stage_dir("ingest")) as out, \
                Progress("ingest", files=n_files, bytes=n_bytes, repos=len(repos), hook=progress_artifact(),
                         logger=log) as progress:
            stats = ingest_to(out, repos, cfg, use_ray, source_skips=skips.files, progress=progress,
                              work_dir=work_dir("ingest"), log=log, plan=plan,
                              license_cache=work_dir(SCANCODE_CACHE))
            write_json_atomic(stats, out / "stats.json")
        metrics = {k: v for k, v in stats.items() if k != "rejected_examples"}
        tracking.publish_metrics("ingest", metrics)
        log.info("ingest: %s", metrics)
    return metrics


def progress_artifact():
    """A ``Progress`` hook that keeps the ``ingest-progress`` artifact of this flow run current
    (None outside a flow run: artifacts need one)."""
    if FlowRunContext.get() is None:
        return None
    artifact_id = create_progress_artifact(0.0, key=PROGRESS_KEY, description="ingest: listing done, starting")

    def update(snapshot: Snapshot) -> None:
        update_progress_artifact(artifact_id, progress=round(100 * snapshot.fraction, 1), description=snapshot.line())

    return update
