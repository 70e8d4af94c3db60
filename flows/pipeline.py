"""The pipeline flow: one Prefect flow run for the whole DAG, a child flow run per executed stage.

    starflow run                  # what `make run` does
    dvc repro                     # the same DAG, driven by DVC (each stage: `starflow stage NAME`)
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import mlflow
import yaml
from mlflow import MlflowClient
from prefect import flow, get_run_logger

from flows import dvc_dag, tracking
from flows.config import Params, load_params
from flows.stages import STAGE_FLOWS
from flows.workspace import WORK
from ray_tasks.executor import ray_running
from ray_tasks.tables import write_json_atomic


@flow(name="starflow-pipeline")
def pipeline(params: Params | None = None, force: list[str] | None = None) -> dict:
    """Run every stale stage of dvc.yaml in order; ``params`` (from the UI) are written to params.yaml first."""
    log = get_run_logger()
    if params is not None:
        _write_params(params)
    params = load_params()
    force = set(force or [])
    unknown = force - set(STAGE_FLOWS)
    if unknown:
        raise ValueError(f"unknown stages to force: {sorted(unknown)}")

    ran: dict[str, float] = {}
    skipped: list[str] = []
    parent_id: str | None = None
    ray_session = contextlib.ExitStack()
    try:
        for stage in dvc_dag.stage_names():
            why = dvc_dag.changes(stage)
            if not why and stage not in force:
                skipped.append(stage)
                log.info("stage %s is up to date: skipped", stage)
                continue
            log.info("stage %s is stale (%s): running", stage, why or "forced")
            parent_id = parent_id or _start_parent_run(params)
            if not ran:
                # One Ray for every stage of this run, started with the first stale one: each stage
                # alone starts and stops its own (7-10 s each on 2 cores).
                ray_session.enter_context(ray_running(params.ray.address, params.ray.num_cpus,
                                                      params.ray.object_store_memory_mb))
            t0 = time.perf_counter()
            STAGE_FLOWS[stage](params, parent_run_id=parent_id)
            dvc_dag.commit(stage)
            ran[stage] = round(time.perf_counter() - t0, 1)
        pushed = dvc_dag.push() if ran and params.dvc.push else 0
    except BaseException:
        if parent_id:
            MlflowClient().set_terminated(parent_id, status="FAILED")
        raise
    finally:
        ray_session.close()
    summary = {"ran": list(ran), "skipped": skipped, "wall_s": ran, "dvc_pushed": pushed}
    if parent_id:
        client = MlflowClient()
        for stage, secs in ran.items():
            client.log_metric(parent_id, f"wall_s.{stage}", secs)
        client.set_tag(parent_id, "starflow.stages_run", ",".join(ran))
        client.set_terminated(parent_id, status="FINISHED")
        summary["mlflow_parent_run_id"] = parent_id
    write_json_atomic(summary, WORK / "last_run.json")
    tracking.publish_markdown("pipeline", _report(summary))
    log.info("pipeline: %s", summary)
    return summary


def _start_parent_run(params: Params) -> str:
    tracking.setup_mlflow(params)
    tags = {"starflow.kind": "pipeline", **tracking.prefect_tags()}
    if commit := tracking.git_commit():
        tags["git.commit"] = commit
    experiment = mlflow.get_experiment_by_name(params.mlflow.experiment)
    run = MlflowClient().create_run(experiment.experiment_id, run_name="pipeline", tags=tags)
    return run.info.run_id


def _write_params(params: Params) -> None:
    path = Path("params.yaml")
    new = params.model_dump(mode="json")
    if not path.exists() or yaml.safe_load(path.read_text()) != new:
        path.write_text(yaml.safe_dump(new, sort_keys=False))


def _report(summary: dict) -> str:
    lines = ["# StarFlow pipeline run", "", "| stage | status | wall s |", "|---|---|---|"]
    lines += [f"| {s} | ran | {t} |" for s, t in summary["wall_s"].items()]
    lines += [f"| {s} | up to date | |" for s in summary["skipped"]]
    return "\n".join(lines)
