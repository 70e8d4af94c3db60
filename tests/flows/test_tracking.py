"""Publishing on a real MLflow store (SQLite in tmp): the pipeline run, datasets, artifact keys.

The workspace is the repository's dvc.yaml with a dvc.lock written the way ``dvc commit``
writes it (``record``), so the data versions each run records can be checked against the lock.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow import MlflowClient

from flows import dvc_dag, tracking
from flows.config import Params
from flows.tracking import MlflowParams
from tests.paths import ROOT


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """One SQLite store per module (creating its tables takes seconds)."""
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture
def ws(in_tmp, store, monkeypatch) -> Path:
    """A workspace: dvc.yaml of the repository; MLflow on this module's store (mlflow.set_tracking_uri
    exports MLFLOW_TRACKING_URI, so another module's may linger: set and restored here)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    shutil.copy2(ROOT / "dvc.yaml", in_tmp / "dvc.yaml")
    (in_tmp / "metrics").mkdir()
    return in_tmp


def params_for(store: Path, experiment: str, **sections) -> Params:
    mlflow_params = MlflowParams(tracking_uri=f"sqlite:///{store / 'mlflow.db'}",
                                 artifact_location=(store / "artifacts").as_uri(), experiment=experiment)
    return Params(mlflow=mlflow_params, **sections)


def experiment_name(request) -> str:
    return re.sub(r"[^\w-]", "-", request.node.name)[:60]


def record(stage: str, outs: dict[str, str], lock: Path = Path("dvc.lock")) -> None:
    """What ``dvc commit STAGE`` leaves in dvc.lock for the stage's outputs."""
    data = yaml.safe_load(lock.read_text()) if lock.exists() else {"schema": "2.0", "stages": {}}
    data["stages"][stage] = {"cmd": f"starflow stage {stage}",
                             "outs": [{"path": p, "md5": m, "size": 1, "nfiles": 1} for p, m in outs.items()]}
    lock.write_text(yaml.safe_dump(data, sort_keys=False))


def md5_dir(seed: str) -> str:
    """A directory md5 as DVC writes it (32 hex digits and ``.dir``: 36 characters)."""
    return hashlib.md5(seed.encode()).hexdigest() + ".dir"


def test_artifact_keys_follow_prefects_rule():
    for stage in [*dvc_dag.stage_names(ROOT / "dvc.yaml"), "pipeline"]:
        for suffix in ("stats", "report", "mlflow-run", "results"):
            assert tracking.artifact_key(f"{stage}-{suffix}") == f"{stage}-{suffix}"
    for bad in ("Train-stats", "train_stats", "train stats", "train.stats", ""):
        with pytest.raises(ValueError):
            tracking.artifact_key(bad)


def test_every_artifact_the_flows_create_has_a_valid_key():
    """Each ``create_*_artifact(... key=...)`` in flows/ goes through ``artifact_key`` (checked when
    it runs, templates above) or is a literal / module constant that passes it."""
    calls = 0
    for path in (ROOT / "flows").rglob("*.py"):
        text = path.read_text()
        for key in re.findall(r"create_\w+_artifact\b,?\s*\(?[^)]*?key=([^,)]+)", text):
            calls += 1
            if key.startswith("artifact_key("):
                continue
            if key.isidentifier():
                const = re.search(rf"^{key}\s*=\s*[\"']([^\"']*)[\"']", text, re.M)
                assert const, f"{path.name}: artifact key {key} is neither checked nor a constant"
                key = const.group(1)
            tracking.artifact_key(key.strip("\"'"))
    assert calls >= 5


def test_the_experiment_opens_in_the_model_training_view(ws, store, request):
    name = experiment_name(request)
    params = params_for(store, name)
    tracking.setup_mlflow(params)
    key, kind = tracking.EXPERIMENT_KIND
    assert MlflowClient().get_experiment_by_name(name).tags[key] == kind
    MlflowClient().set_experiment_tag(MlflowClient().get_experiment_by_name(name).experiment_id, key, "genai_development")
    tracking.setup_mlflow(params)  # an existing experiment is switched too
    assert MlflowClient().get_experiment_by_name(name).tags[key] == kind


def test_changed_params_are_those_off_the_defaults_plus_the_changed_keys():
    defaults = Params()
    tuned = Params.model_validate({"train": {"max_steps": defaults.train.max_steps + 7}})
    assert tracking.changed_params(tuned, defaults) == {"train.max_steps": defaults.train.max_steps + 7}
    # A key the experiment set to its default value is still logged: the user changed it.
    both = tracking.changed_params(tuned, defaults, {"train.lr": defaults.train.lr})
    assert both == {"train.lr": defaults.train.lr, "train.max_steps": defaults.train.max_steps + 7}


def test_pipeline_run_names_params_metrics_and_datasets(ws, store, request, monkeypatch):
    name = experiment_name(request)
    params = params_for(store, name, train={"max_steps": 13})
    tokenize_md5, train_md5 = md5_dir(f"{name}-tokenize"), md5_dir(f"{name}-train")
    record("tokenize", {"data/tokenize": tokenize_md5})
    (ws / "metrics" / "evaluate.json").write_text(json.dumps(
        {"val_loss": 2.5, "perplexity": 12.2, "bits_per_byte": 1.5, "fim_exact_match": 0.25,
         "humaneval": {"pass@1": 0.125}, "promotion": {"promoted": True},
         "registered_model": {"name": "starflow-coder", "version": 4}}))
    (ws / "metrics" / "train.json").write_text(json.dumps({"val_loss_after": 3.0, "tokens_seen": 4096}))

    parent = tracking.start_pipeline_run(params, experiment="exp-lr", changed={"train.max_steps": 13})
    monkeypatch.setenv(tracking.EXPERIMENT_ENV, "exp-lr")
    with tracking.stage_run("train", params, parent) as run:
        train_id = run.info.run_id
    record("train", {"data/train": train_md5})  # the pipeline's dvc commit, after the stage
    tracking.finish_pipeline_run(parent, {"train": 1.5})

    client = MlflowClient()
    pipeline, train = client.get_run(parent), client.get_run(train_id)
    assert pipeline.info.run_name == "exp-lr" and pipeline.info.status == "FINISHED"
    assert pipeline.data.params["train.max_steps"] == "13" and "train.lr" not in pipeline.data.params
    assert pipeline.data.metrics["humaneval.pass_1"] == 0.125 and pipeline.data.metrics["val_loss"] == 2.5
    assert pipeline.data.metrics["promotion.promoted"] == 1.0 and pipeline.data.metrics["wall_s.train"] == 1.5
    assert pipeline.data.tags["promotion.decision"] == "promoted"
    assert pipeline.data.tags["starflow.model_version"] == "starflow-coder/4"
    assert train.data.tags["starflow.experiment"] == "exp-lr"

    def datasets(run_id):
        run = client.get_run(run_id)
        return {(d.dataset.name, d.dataset.digest, {t.key: t.value for t in d.tags}["mlflow.data.context"])
                for d in run.inputs.dataset_inputs}

    assert datasets(train_id) == {("data/tokenize", tokenize_md5, "input"), ("data/train", train_md5, "output")}
    assert ("data/train", train_md5, "output") in datasets(parent)

    experiment = client.get_experiment_by_name(name).experiment_id
    by_tokenize = mlflow.search_runs([experiment], filter_string=f"datasets.digest = '{tokenize_md5}'",
                                     output_format="list")
    assert {r.info.run_id for r in by_tokenize} == {train_id, parent}
