"""The pipeline flow: one Prefect flow run for the whole DAG, a child flow run per executed stage.

    starflow run                  # what `make run` does
    starflow run --params params.tiny.yaml   # the whole DAG on the tiny configuration (~35 s)
    dvc repro                     # the same DAG, driven by DVC (each stage: `starflow stage NAME`)

While a run is in progress its MLflow run id is in ``STARFLOW_MLFLOW_PARENT_RUN_ID``, so that a
stage started from it in another process (``dvc repro``, ``starflow stage``, launched training
ranks) nests under it; a stage started from a shell without it stands alone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

import yaml
from prefect import flow, get_run_logger

from flows import dvc_dag, tracking
from flows.config import Params, load_params
from flows.stages import STAGE_FLOWS
from flows.workspace import PARAMS, WORK
from ray_tasks.executor import ray_running, wants_ray
from ray_tasks.tables import write_json_atomic


@flow(name="starflow-pipeline")
def pipeline(params: Params | None = None, force: list[str] | None = None, params_file: str = PARAMS) -> dict:
    """Run every stale stage of dvc.yaml in order, with the settings of ``params_file``.

    ``params`` (from the UI) are written to params.yaml first."""
    log = get_run_logger()
    if params is not None:
        _write_params(params)
    force = set(force or [])
    unknown = force - set(STAGE_FLOWS)
    if unknown:
        raise ValueError(f"unknown stages to force: {sorted(unknown)}")
    with params_in_place(Path(params_file)):
        params = load_params(PARAMS)
        summary = _run_stale_stages(params, force, log)
    write_json_atomic(summary, WORK / "last_run.json")
    tracking.publish_markdown("pipeline", _report(summary))
    log.info("pipeline: %s", summary)
    return summary


def _run_stale_stages(params: Params, force: set[str], log) -> dict:
    ran: dict[str, float] = {}
    skipped: list[str] = []
    parent_id: str | None = None
    session = contextlib.ExitStack()
    try:
        for stage in dvc_dag.stage_names():
            why = dvc_dag.changes(stage)
            if not why and stage not in force:
                skipped.append(stage)
                log.info("stage %s is up to date: skipped", stage)
                continue
            log.info("stage %s is stale (%s): running", stage, why or "forced")
            if parent_id is None:
                parent_id = tracking.start_pipeline_run(params)
                session.enter_context(_parent_run_env(parent_id))
                if wants_ray(params.ray, ray_up=False):
                    # Ray for every stage of this run, started with the first stale one: each stage
                    # alone would start and stop its own (7-10 s each on 2 cores).
                    session.enter_context(ray_running(params.ray))
            t0 = time.perf_counter()
            STAGE_FLOWS[stage](params, parent_run_id=parent_id)
            dvc_dag.commit(stage)
            ran[stage] = round(time.perf_counter() - t0, 1)
        pushed = dvc_dag.push() if ran and params.dvc.push else 0
    except BaseException:
        if parent_id:
            tracking.fail_pipeline_run(parent_id)
        raise
    finally:
        session.close()
    summary = {"ran": list(ran), "skipped": skipped, "wall_s": ran, "dvc_pushed": pushed}
    if parent_id:
        tracking.finish_pipeline_run(parent_id, ran)
        summary["mlflow_parent_run_id"] = parent_id
    return summary


@contextlib.contextmanager
def params_in_place(path: Path):
    """``path``'s settings as the workspace's params.yaml for the length of a run, then params.yaml back.

    DVC reads each stage's params from params.yaml (it has no option for another file), so for
    its staleness checks and dvc.lock to describe what ran, the file it reads must hold the
    settings the stages run with. The user's params.yaml is kept aside under .starflow/ and put
    back afterwards, also after a failure; one left aside by a killed run is put back first."""
    target, saved = Path(PARAMS), WORK / "params.yaml.saved"
    if saved.exists():
        os.replace(saved, target)
    if path.resolve() == target.resolve():
        yield
        return
    WORK.mkdir(parents=True, exist_ok=True)
    shutil.copy2(target, saved)
    try:
        shutil.copyfile(path, target)
        yield
    finally:
        os.replace(saved, target)


@contextlib.contextmanager
def _parent_run_env(run_id: str):
    """``STARFLOW_MLFLOW_PARENT_RUN_ID`` set for the run (what stage runs in other processes nest under)."""
    before = os.environ.get(tracking.PARENT_RUN_ENV)
    os.environ[tracking.PARENT_RUN_ENV] = run_id
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(tracking.PARENT_RUN_ENV, None)
        else:
            os.environ[tracking.PARENT_RUN_ENV] = before


def _write_params(params: Params) -> None:
    path = Path(PARAMS)
    new = params.model_dump(mode="json")
    if not path.exists() or yaml.safe_load(path.read_text()) != new:
        path.write_text(yaml.safe_dump(new, sort_keys=False))


def _report(summary: dict) -> str:
    lines = ["# StarFlow pipeline run", "", "| stage | status | wall s |", "|---|---|---|"]
    lines += [f"| {s} | ran | {t} |" for s, t in summary["wall_s"].items()]
    lines += [f"| {s} | up to date | |" for s in summary["skipped"]]
    return "\n".join(lines)
