"""Publishing a stage: MLflow runs (parent + child per stage), Prefect artifacts, DVC metrics.

Every stage run is an MLflow run tagged with the Prefect flow-run id, the git
commit and the DVC hashes of its inputs (from dvc.lock). When the pipeline flow
drives the stages, its MLflow run is the parent of each stage's run.

Lineage: each stage run records its data inputs as MLflow datasets named by their path
(``data/tokenize``) whose digest is the md5 dvc.lock holds for it (a directory's ends in
``.dir``), context ``input``; when the pipeline run finishes, every stage it ran gets its
committed outputs as datasets of context ``output``. So
``search_runs(filter_string="datasets.digest = '<md5>'")`` finds the run that produced a data
version and every run built on it (``flows/lineage.py`` walks that chain back from a model).

Names are kept the same across runs so that MLflow's compare view lines them up: a stage's
params are ``<stage>.<field>``, its metrics the keys of ``metrics/<stage>.json`` (``mlflow_key``),
and the pipeline run's headline metrics (``HEADLINE``) carry the evaluate run's names.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import mlflow
import yaml
from mlflow.entities import Metric, Param
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

EXPERIMENT_ENV = "STARFLOW_EXPERIMENT"
"""The DVC experiment a run belongs to (set by the pipeline for a parameter run); stage runs
started under it are tagged ``starflow.experiment``."""

EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
"""The experiment tag MLflow's UI reads to open an experiment as model training rather than on
the GenAI overview (the ``ExperimentKind`` enum in MLflow 3's UI bundle). The 3.x UI also keeps a
global GenAI / machine-learning switch, so run links add ``?workflowType=machine_learning``."""

HEADLINE = {
    "val_loss": ("evaluate", "val_loss"),
    "humaneval.pass_1": ("evaluate", "humaneval.pass@1"),
    "fim_exact_match": ("evaluate", "fim_exact_match"),
    "bits_per_byte": ("evaluate", "bits_per_byte"),
    "perplexity": ("evaluate", "perplexity"),
    "frozen_sample.bits_per_byte": ("evaluate", "frozen_sample.bits_per_byte"),
    "promotion.promoted": ("evaluate", "promotion.promoted"),
    "train.val_loss_after": ("train", "val_loss_after"),
    "train.tokens_seen": ("train", "tokens_seen"),
}
"""The pipeline run's metrics: MLflow name -> (stage, dotted key in ``metrics/<stage>.json``).
The evaluate names are those its own run logs, so pipeline and evaluate runs compare alike
(``promotion.promoted``, 1 or 0, is the pipeline run's; the evaluate run has the decision as
``promotion.*`` tags)."""


def absolute_store_uri(uri: str, workspace: str | Path = ".") -> str:
    """A relative ``sqlite:///mlflow.db`` made absolute against ``workspace``; other URIs as given.

    MLflow caches one store per URI string, so a relative one keeps pointing at the folder where it
    was first opened, even after the process changes directory."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        return prefix + str(Path(workspace).resolve() / uri[len(prefix):])
    return uri


def setup_mlflow(params: Params) -> str:
    uri = absolute_store_uri(os.environ.get("MLFLOW_TRACKING_URI") or params.mlflow.tracking_uri)
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(params.mlflow.experiment) is None:
        location = params.mlflow.artifact_location
        if "://" not in location:
            location = Path(location).resolve().as_uri()
        mlflow.create_experiment(params.mlflow.experiment, artifact_location=location,
                                 tags=dict([EXPERIMENT_KIND]))
    experiment = mlflow.set_experiment(params.mlflow.experiment)
    key, kind = EXPERIMENT_KIND
    if experiment.tags.get(key) != kind:  # an experiment created before the tag existed
        mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, key, kind)
    return uri


def run_url(ui_url: str, experiment_id: str, run_id: str) -> str:
    """A run's page in MLflow's UI, in its model-training view."""
    return f"{ui_url}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


def prefect_tags() -> dict[str, str]:
    from prefect.runtime import flow_run

    tags = {}
    if flow_run.id:
        tags["prefect.flow_run_id"] = str(flow_run.id)
        tags["prefect.flow_run_name"] = str(flow_run.name)
        # Without a UI (the ephemeral API) Prefect builds "None/flow-runs/...": no link then.
        if str(flow_run.ui_url or "").startswith("http"):
            tags["prefect.flow_run_url"] = str(flow_run.ui_url)
    return tags


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def start_pipeline_run(params: Params, experiment: str | None = None,
                       changed: dict[str, Any] | None = None) -> str:
    """The pipeline's MLflow run (the parent of each stage's run); its id.

    ``experiment``: the DVC experiment name when the run is a parameter run;
    ``changed``: the dotted params that differ from params.yaml (``{"train.lr": 3e-4}``).

    The run is named after the experiment, else after its Prefect flow run, so the runs table
    tells pipeline runs apart. It logs the params that differ from the embedded defaults
    (``Params()``), plus every key in ``changed``: the defaults are one fixed baseline for every
    run at every commit, so an unlogged key always means "the default" (``starflow compare``
    fills it in) and two runs that tuned the same key both show it. A baseline of params.yaml at
    git HEAD would move with each commit, and a run of the committed settings would log nothing.
    """
    from flows.config import Params

    setup_mlflow(params)
    tags = {"starflow.kind": "pipeline", **prefect_tags()}
    if commit := git_commit():
        tags["git.commit"] = commit
    if experiment:
        tags["starflow.experiment"] = experiment
    if changed:
        tags["starflow.changed"] = ",".join(sorted(changed))
    name = experiment or tags.get("prefect.flow_run_name") or "pipeline"
    client = mlflow.MlflowClient()
    run = client.create_run(mlflow.get_experiment_by_name(params.mlflow.experiment).experiment_id,
                            run_name=name, tags=tags)
    logged = changed_params(params, Params(), changed)
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in logged.items()])
    link_run_artifact("pipeline", params, run)
    return run.info.run_id


_MISSING = object()


def changed_params(params: BaseModel, defaults: BaseModel, changed: dict[str, Any] | None = None) -> dict[str, Any]:
    """The flat params of ``params`` that differ from ``defaults``, and every key of ``changed``."""
    ours, base = flatten(params), flatten(defaults)
    keys = {k for k, v in ours.items() if base.get(k, _MISSING) != v} | set(changed or {})
    return {k: ours.get(k, (changed or {}).get(k)) for k in sorted(keys)}


def finish_pipeline_run(run_id: str, wall_s: dict[str, float]) -> None:
    """Close the pipeline's run: each executed stage's wall time, the headline metrics, the outputs.

    Called after every stage it ran was ``dvc commit``ed, so dvc.lock now holds their outputs'
    md5s: each ran stage's MLflow run gets them as ``output`` datasets (a finished run still
    takes inputs), and the pipeline run gets every stage output the workspace now holds."""
    client = mlflow.MlflowClient()
    headline = headline_metrics()
    now = int(time.time() * 1000)
    figures = {**{f"wall_s.{stage}": secs for stage, secs in wall_s.items()}, **headline}
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in figures.items()])
    client.set_tag(run_id, "starflow.stages_run", ",".join(wall_s))
    evaluate = _read_metrics("evaluate")
    if "promotion" in evaluate:
        client.set_tag(run_id, "promotion.decision", "promoted" if evaluate["promotion"]["promoted"] else "rejected")
    if model := evaluate.get("registered_model"):
        client.set_tag(run_id, "starflow.model_version", f"{model['name']}/{model['version']}")
    _log_outputs(client, run_id, wall_s)
    client.set_terminated(run_id, status="FINISHED")
    if headline:
        _safe(create_table_artifact, key=artifact_key("pipeline-results"),
              table=[{"metric": k, "value": v} for k, v in headline.items()],
              description="headline metrics of this pipeline run (as in its MLflow run)")


def headline_metrics() -> dict[str, float]:
    """``HEADLINE``'s figures from the workspace's metrics files (what the outputs now score)."""
    out: dict[str, float] = {}
    for key, (stage, path) in HEADLINE.items():
        value = _flat(_read_metrics(stage)).get(path)
        if isinstance(value, (int, float)):
            out[key] = float(value)
    return out


def _read_metrics(stage: str) -> dict[str, Any]:
    path = metrics_file(stage)
    return json.loads(path.read_text()) if path.exists() else {}


def data_versions(stages: list[str] | None = None, side: str = "outs") -> dict[str, str]:
    """``{path: md5}`` from dvc.lock: the data outputs of ``stages`` (all stages when None), or with
    ``side="deps"`` the stage outputs that ``stages`` read. Only paths dvc.yaml declares as a
    stage's ``outs`` count: metrics files are DVC outputs too, but no data version; code deps are
    the git commit's. Outside a workspace (no dvc.yaml) there are none."""
    if not Path("dvc.yaml").exists():
        return {}
    produced = {o["path"]: o["md5"] for s in dvc_dag.stage_names() for o in dvc_dag.locked(s).get("outs", [])
                if o.get("md5") and o["path"] in _declared(s, "outs")}
    if side == "deps":
        return {p: produced[p] for s in stages or [] for p in _declared(s, "deps") if p in produced}
    return {p: produced[p] for s in stages or dvc_dag.stage_names() for p in _declared(s, "outs") if p in produced}


def _declared(stage: str, side: str) -> list[str]:
    """The ``deps`` or ``outs`` dvc.yaml declares for a stage (dvc.lock's deps are those of its
    previous run, and its outs include the metrics files)."""
    spec = (yaml.safe_load(Path("dvc.yaml").read_text()) or {}).get("stages", {}).get(stage, {})
    return [d if isinstance(d, str) else next(iter(d)) for d in spec.get(side, [])]


def log_datasets(client: mlflow.MlflowClient, run_id: str, versions: dict[str, str], context: str) -> None:
    """Record DVC data versions on a run as MLflow datasets: name = path, digest = DVC md5.

    ``MetaDataset`` carries metadata only; its automatic digest hashes name and source, not the
    content, so the DVC md5 is passed as the digest (it fits MLflow's 36-character limit, ``.dir``
    included)."""
    from mlflow.data.dataset_source_registry import get_dataset_source_from_json
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    def local(path: str):  # MLflow's own "local" source type (the one it gives local paths)
        return get_dataset_source_from_json(json.dumps({"uri": Path(path).resolve().as_uri()}), source_type="local")

    inputs = [
        DatasetInput(
            MetaDataset(local(path), name=path, digest=md5)._to_mlflow_entity(),
            tags=[InputTag("mlflow.data.context", context), InputTag("dvc.path", path), InputTag("dvc.md5", md5)],
        )
        for path, md5 in versions.items()
    ]
    if inputs:
        client.log_inputs(run_id, datasets=inputs)


def _log_outputs(client: mlflow.MlflowClient, pipeline_run_id: str, ran: dict[str, float]) -> None:
    """Each ran stage's committed outputs on its own run; every stage output on the pipeline run."""
    experiment_id = client.get_run(pipeline_run_id).info.experiment_id
    for stage in ran:
        runs = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{pipeline_run_id}' and "
                                  f"tags.`starflow.stage` = '{stage}'", order_by=["attributes.start_time DESC"],
                                  max_results=1)
        if runs:
            log_datasets(client, runs[0].info.run_id, data_versions([stage]), "output")
    log_datasets(client, pipeline_run_id, data_versions(), "output")


def fail_pipeline_run(run_id: str) -> None:
    mlflow.MlflowClient().set_terminated(run_id, status="FAILED")


def dvc_input_hashes(stage: str) -> dict[str, str]:
    """``dvc.dep.<path>`` tags: the md5 of each data input this run reads, the upstream stage's
    output as dvc.lock holds it now (the stage's own deps there are those of its previous run)."""
    return {f"dvc.dep.{path}": md5 for path, md5 in data_versions([stage], side="deps").items()}


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
    if experiment := os.environ.get(EXPERIMENT_ENV):
        tags["starflow.experiment"] = experiment
    with mlflow.start_run(run_name=stage, tags=tags, log_system_metrics=log_system_metrics) as run:
        section = getattr(params, stage, None)
        if section is not None:
            mlflow.log_params(flatten(section, prefix=f"{stage}."))
        # The upstream stages were committed before this one started: dvc.lock holds their outputs.
        inputs = {tag.removeprefix("dvc.dep."): md5 for tag, md5 in tags.items() if tag.startswith("dvc.dep.")}
        log_datasets(mlflow.MlflowClient(), run.info.run_id, inputs, "input")
        yield run
        link_run_artifact(stage, params, run)


def link_run_artifact(stage: str, params: Params, run) -> None:
    url = run_url(params.mlflow.ui_url, run.info.experiment_id, run.info.run_id)
    _safe(create_link_artifact, key=artifact_key(f"{stage}-mlflow-run"), link=url, link_text=f"MLflow run of {stage}")


def link_model_version(params: Params, version: str | int) -> None:
    """The registered model version a run produced, as a keyed link artifact."""
    name = params.mlflow.registered_model
    _safe(create_link_artifact, key=artifact_key("evaluate-model-version"),
          link=f"{params.mlflow.ui_url}/#/models/{name}/versions/{version}?workflowType=machine_learning",
          link_text=f"{name} version {version}")


def artifact_key(key: str) -> str:
    """``key`` checked by Prefect's own rule for artifact keys (lowercase letters, digits, dashes),
    also where no flow run is there to create the artifact (``_safe`` skips it), so that a bad key
    fails in every test rather than only under a flow run."""
    from prefect.types.names import raise_on_name_alphanumeric_dashes_only

    if not key:
        raise ValueError("an artifact key may not be empty")
    return raise_on_name_alphanumeric_dashes_only(key, field_name=f"artifact key {key!r}")


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
    _safe(create_table_artifact, key=artifact_key(f"{stage}-stats"), table=rows, description=f"{stage} figures")


def mlflow_key(name: str) -> str:
    """A metric name as MLflow accepts it (``humaneval.pass@1`` -> ``humaneval.pass_1``)."""
    return re.sub(r"[^\w\-. /]", "_", name)


def publish_results(stage: str, stats: dict[str, Any]) -> None:
    """The stage's headline figures (``HEADLINE``) as a keyed table, ``<stage>-results``: the
    evaluation results whose history the Artifacts page keeps across runs."""
    flat = _flat(stats)
    rows = [{"metric": name, "value": flat[path]} for name, (s, path) in HEADLINE.items() if s == stage and path in flat]
    _safe(create_table_artifact, key=artifact_key(f"{stage}-results"), table=rows,
          description=f"{stage}: headline results")


def publish_markdown(stage: str, markdown: str) -> None:
    _safe(create_markdown_artifact, key=artifact_key(f"{stage}-report"), markdown=markdown)


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
