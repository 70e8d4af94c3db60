"""Publishing a stage: MLflow runs (parent + child per stage), Prefect artifacts, DVC metrics.

Every stage run is an MLflow run tagged with the Prefect flow-run id, the git
commit and the DVC hashes of its inputs (from dvc.lock). When the pipeline flow
drives the stages, its MLflow run is the parent of each stage's run.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import mlflow
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from pydantic import BaseModel

from flows import dvc_dag
from flows.workspace import metrics_file
from ray_tasks.params import StageParams
from ray_tasks.tables import write_json_atomic

if TYPE_CHECKING:
    from flows.config import Params

class MlflowParams(StageParams):
    """Where runs and models are tracked (``params.yaml: mlflow``)."""

    tracking_uri: str = "sqlite:///mlflow.db"
    """MLflow backend (env MLFLOW_TRACKING_URI overrides). Relative sqlite paths are in the workspace."""
    artifact_location: str = "mlartifacts"
    """Artifact root for a new experiment (a folder or s3:// URI)."""
    experiment: str = "starflow"
    ui_url: str = "http://127.0.0.1:5000"
    """Where `mlflow ui`/`mlflow server` serves this store; used for links in Prefect artifacts."""
    registered_model: str = "starflow-coder"
    """Registry name for trained models; new versions get alias ``challenger``."""


PARENT_RUN_ENV = "STARFLOW_MLFLOW_PARENT_RUN_ID"
"""Set by the pipeline flow so stage runs (in-process or under `dvc repro`) nest under its run."""


def setup_mlflow(params: Params) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI") or params.mlflow.tracking_uri
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(params.mlflow.experiment) is None:
        location = params.mlflow.artifact_location
        if "://" not in location:
            location = Path(location).resolve().as_uri()
        mlflow.create_experiment(params.mlflow.experiment, artifact_location=location)
    mlflow.set_experiment(params.mlflow.experiment)
    return uri


def prefect_tags() -> dict[str, str]:
    from prefect.runtime import flow_run

    tags = {}
    if flow_run.id:
        tags["prefect.flow_run_id"] = str(flow_run.id)
        tags["prefect.flow_run_name"] = str(flow_run.name)
        if flow_run.ui_url:
            tags["prefect.flow_run_url"] = str(flow_run.ui_url)
    return tags


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def start_pipeline_run(params: Params) -> str:
    """The pipeline's MLflow run (the parent of each stage's run); its id."""
    setup_mlflow(params)
    tags = {"starflow.kind": "pipeline", **prefect_tags()}
    if commit := git_commit():
        tags["git.commit"] = commit
    experiment = mlflow.get_experiment_by_name(params.mlflow.experiment)
    run = mlflow.MlflowClient().create_run(experiment.experiment_id, run_name="pipeline", tags=tags)
    return run.info.run_id


def finish_pipeline_run(run_id: str, wall_s: dict[str, float]) -> None:
    """Close the pipeline's run with each executed stage's wall time."""
    client = mlflow.MlflowClient()
    for stage, secs in wall_s.items():
        client.log_metric(run_id, f"wall_s.{stage}", secs)
    client.set_tag(run_id, "starflow.stages_run", ",".join(wall_s))
    client.set_terminated(run_id, status="FINISHED")


def fail_pipeline_run(run_id: str) -> None:
    mlflow.MlflowClient().set_terminated(run_id, status="FAILED")


def dvc_input_hashes(stage: str) -> dict[str, str]:
    """The md5s dvc.lock recorded for this stage's dependencies (from the previous run)."""
    return {f"dvc.dep.{d['path']}": d.get("md5", "") for d in dvc_dag.locked(stage).get("deps", []) if "md5" in d}


@contextlib.contextmanager
def stage_run(stage: str, params: Params, parent_run_id: str | None = None,
              log_system_metrics: bool = False) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run for one stage, nested under the pipeline's run when there is one."""
    setup_mlflow(params)
    parent = parent_run_id or os.environ.get(PARENT_RUN_ENV)
    tags = {"starflow.stage": stage, **prefect_tags(), **dvc_input_hashes(stage)}
    if commit := git_commit():
        tags["git.commit"] = commit
    if parent:
        tags["mlflow.parentRunId"] = parent
    with mlflow.start_run(run_name=stage, tags=tags, log_system_metrics=log_system_metrics) as run:
        section = getattr(params, stage, None)
        if section is not None:
            mlflow.log_params(flatten(section, prefix=f"{stage}."))
        yield run
        link_run_artifact(stage, params, run)


def link_run_artifact(stage: str, params: Params, run: mlflow.ActiveRun) -> None:
    url = f"{params.mlflow.ui_url}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    _safe(create_link_artifact, key=f"{stage}-mlflow-run", link=url, link_text=f"MLflow run of {stage}")


def publish_metrics(stage: str, metrics: dict[str, Any], table_rows: list[dict[str, Any]] | None = None) -> None:
    """Write metrics/<stage>.json (DVC), log numeric metrics to MLflow, add a Prefect table."""
    write_json_atomic(metrics, metrics_file(stage))
    numeric = {
        mlflow_key(k): float(v)
        for k, v in _flat(metrics).items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    if mlflow.active_run():
        mlflow.log_metrics(numeric)
        mlflow.log_artifact(str(metrics_file(stage)))
    rows = table_rows or [{"metric": k, "value": v} for k, v in numeric.items()]
    _safe(create_table_artifact, key=f"{stage}-stats", table=rows, description=f"{stage} figures")


def mlflow_key(name: str) -> str:
    """A metric name as MLflow accepts it (``humaneval.pass@1`` -> ``humaneval.pass_1``)."""
    return re.sub(r"[^\w\-. /]", "_", name)


def publish_markdown(stage: str, markdown: str) -> None:
    _safe(create_markdown_artifact, key=f"{stage}-report", markdown=markdown)


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _safe(fn, **kwargs) -> None:
    """Artifacts need a flow-run context; outside one (plain function calls in tests) skip them."""
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is not None:
        fn(**kwargs)


def flatten(params: BaseModel, prefix: str = "") -> dict[str, Any]:
    """``{"train.lr": 0.002, ...}``: how params are logged to MLflow."""
    out: dict[str, Any] = {}
    for name, value in params.model_dump(mode="json").items():
        _flatten_into(out, f"{prefix}{name}", value)
    return out


def _flatten_into(out: dict[str, Any], key: str, value: Any) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten_into(out, f"{key}.{k}", v)
    elif isinstance(value, list) and value and isinstance(value[0], dict):
        for i, v in enumerate(value):
            _flatten_into(out, f"{key}.{i}", v)
    else:
        out[key] = value
