"""The whole DAG end to end in a fresh workspace: real Prefect, Ray, DeepSpeed, MLflow and DVC.

One workspace walks through the acceptance story in order: a first `starflow run`
executes every stage; a second runs none and ends "nothing new"; a changed `train` param
re-runs only train and evaluate; `dvc repro` drives the same stages through `starflow stage`.
Every run fingerprints the sources first (the ``sources`` stage, always run, never counted).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import make_corpus
from flows.config import parse_params

pytestmark = pytest.mark.slow

from tests.paths import ROOT  # noqa: E402
from tests.workspaces import make_workspace  # noqa: E402
BIN = Path(sys.executable).parent
STAGES = ["ingest", "dedup", "curate", "attribution", "tokenize", "train", "evaluate"]

TINY_PARAMS = yaml.safe_load((ROOT / "params.tiny.yaml").read_text())
"""The committed tiny configuration, with a generated corpus in front of its sources (it holds a
duplicate, a copyleft repository and bad files of each kind, which the assertions count)."""
TINY_PARAMS["ingest"]["sources"] = [{"kind": "directory", "path": "corpus"}, *TINY_PARAMS["ingest"]["sources"]]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("ws")
    parse_params(TINY_PARAMS)  # valid before anything runs
    make_workspace(ws, TINY_PARAMS, _env(ws))
    make_corpus(ws / "corpus")
    return ws


def _env(ws: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}:{env['PATH']}"
    env["PREFECT_HOME"] = str(ws / ".prefect-home")
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("STARFLOW_MLFLOW_PARENT_RUN_ID", None)
    return env


def _sh(ws: Path, *cmd: str, timeout: int = 900, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    exe = str(BIN / cmd[0]) if (BIN / cmd[0]).exists() else cmd[0]
    proc = subprocess.run([exe, *cmd[1:]], cwd=ws, env={**_env(ws), **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    return proc


def _run(ws: Path, *args: str) -> dict:
    out = _sh(ws, "starflow", "run", *args)
    summary = json.loads((ws / ".starflow" / "last_run.json").read_text())
    # The pipeline flow run's final state says what ran.
    assert f"Finished in state Completed('{'ran ' + ', '.join(summary['ran']) if summary['ran'] else 'nothing new'}')" \
        in out.stdout + out.stderr
    return summary


def _mlflow(ws: Path):
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{ws / 'mlflow.db'}")
    return MlflowClient()


def test_first_run_executes_every_stage(workspace):
    summary = _run(workspace)
    assert summary["ran"] == STAGES and summary["skipped"] == []
    assert summary["dvc_pushed"] > 0 and any((workspace / ".dvc_remote").rglob("*"))
    assert sorted(summary["sources"]["changed"]) == ["directory corpus: not fingerprinted before",
                                                      "python_env 6 distributions: not fingerprinted before"]

    lock = yaml.safe_load((workspace / "dvc.lock").read_text())
    assert list(lock["stages"]) == ["sources", *STAGES]
    consumed = next(d for d in lock["stages"]["ingest"]["deps"] if d["path"] == "data/sources.json")
    assert consumed["md5"] == lock["stages"]["sources"]["outs"][0]["md5"]

    metrics = {s: json.loads((workspace / "metrics" / f"{s}.json").read_text()) for s in STAGES}
    assert metrics["ingest"]["rejected_by_reason"] == {"binary": 1}  # latin1.py decodes with a detected encoding
    assert metrics["ingest"]["non_utf8_files"] == 1
    assert metrics["dedup"]["rejected_by_reason"]["exact_duplicate"] >= 5  # shared.py in 6 repos
    assert metrics["curate"]["rejected_by_reason"]["license:non_permissive"] == 2  # copyleft/COPYING + main.py
    assert metrics["attribution"]["files"] == metrics["curate"]["files_kept"] > 0
    assert 0.0 <= metrics["evaluate"]["memorisation"]["share"] <= 1.0
    assert metrics["tokenize"]["val_repositories"] >= 1
    assert metrics["train"]["val_loss_after"] < metrics["train"]["val_loss_before"]
    assert metrics["evaluate"]["selfcheck_pass@1"] == 1.0
    assert 0.0 <= metrics["evaluate"]["humaneval"]["pass@1"] <= 1.0
    assert 0 < metrics["evaluate"]["fim_examples"] <= 8 and 0.0 <= metrics["evaluate"]["fim_exact_match"] <= 1.0
    manifest = json.loads((workspace / "data" / "tokenize" / "manifest.json").read_text())
    split = json.loads((workspace / "data" / "tokenize" / "split.json").read_text())
    assert not set(split["train"]) & set(split["val"]) and manifest["fim"]["fim_fragments"] > 0

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(workspace / "data" / "train" / "model")
    assert type(model).__name__ == "Starcoder2ForCausalLM"


def test_mlflow_has_parent_children_and_challenger(workspace):
    client = _mlflow(workspace)
    summary = json.loads((workspace / ".starflow" / "last_run.json").read_text())
    parent = client.get_run(summary["mlflow_parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags.get("prefect.flow_run_id")
    exp = parent.info.experiment_id
    children = client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(r.data.tags["starflow.stage"] for r in children) == sorted(STAGES)
    # ingest's run records the sources' fingerprint it consumed: dvc.lock's md5 of data/sources.json.
    ingest_run = next(r for r in children if r.data.tags["starflow.stage"] == "ingest")
    lock = yaml.safe_load((workspace / "dvc.lock").read_text())
    assert ingest_run.data.tags["dvc.dep.data/sources.json"] == lock["stages"]["sources"]["outs"][0]["md5"]
    train_run = next(r for r in children if r.data.tags["starflow.stage"] == "train")
    assert train_run.data.params["train.max_steps"] == "30"
    assert len(client.get_metric_history(train_run.info.run_id, "train_loss")) == 30 + 4  # stage 1 + stage 2
    version = client.get_model_version_by_alias("starflow-coder", "challenger")
    assert int(version.version) >= 1
    import mlflow

    served = mlflow.pyfunc.load_model("models:/starflow-coder@challenger")
    completion = served.predict(["def add(a, b):\n"], params={"max_new_tokens": 5})
    assert len(completion) == 1 and isinstance(completion[0], str) and completion[0]


def test_unchanged_rerun_executes_nothing(workspace):
    summary = _run(workspace)
    assert summary["ran"] == [] and summary["skipped"] == STAGES and summary["sources"]["changed"] == []


def test_changed_train_params_rerun_only_train_and_evaluate(workspace):
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["train"]["max_steps"] = 20
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    summary = _run(workspace)
    assert summary["ran"] == ["train", "evaluate"]
    train_metrics = json.loads((workspace / "metrics" / "train.json").read_text())
    assert train_metrics["stage1"]["steps"] == 20 and train_metrics["steps"] == 24


def test_run_with_another_params_file_leaves_params_yaml_alone(workspace):
    """``starflow run --params FILE`` runs with FILE; DVC judges and records against FILE too."""
    before = (workspace / "params.yaml").read_text()
    other = yaml.safe_load(before)
    other["evaluate"]["fim"]["limit"] = 5
    (workspace / "other.yaml").write_text(yaml.safe_dump(other, sort_keys=False))
    summary = _run(workspace, "--params", "other.yaml")
    assert summary["ran"] == ["evaluate"]
    assert json.loads((workspace / "metrics" / "evaluate.json").read_text())["fim_examples"] == 5
    lock = yaml.safe_load((workspace / "dvc.lock").read_text())
    assert lock["stages"]["evaluate"]["params"]["params.yaml"]["evaluate"]["fim"]["limit"] == 5
    assert (workspace / "params.yaml").read_text() == before and not (workspace / ".starflow" / "params.yaml.saved").exists()
    # params.yaml's own settings are now the change: evaluate (only) is stale again.
    stale = json.loads(_sh(workspace, "dvc", "status", "--json").stdout)
    assert list(stale) == ["sources", "evaluate"] and stale["sources"] == ["always changed"]


def test_dvc_repro_drives_the_same_stages(workspace):
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["evaluate"]["humaneval"]["max_new_tokens"] = 8
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # As if `starflow run` had started this repro: its stage runs nest under the pipeline's run.
    parent = json.loads((workspace / ".starflow" / "last_run.json").read_text())["mlflow_parent_run_id"]
    proc = _sh(workspace, "dvc", "repro", env={"STARFLOW_MLFLOW_PARENT_RUN_ID": parent})
    out = proc.stdout + proc.stderr
    assert "Running stage 'evaluate'" in out
    assert "Running stage 'train'" not in out and "Running stage 'sources'" in out  # the check runs every time
    assert json.loads(_sh(workspace, "dvc", "status", "--json").stdout) == {"sources": ["always changed"]}
    client = _mlflow(workspace)
    runs = client.search_runs([client.get_experiment_by_name("starflow").experiment_id],
                              "tags.`starflow.stage` = 'evaluate'")
    assert len(runs) == 4  # first run, changed train params, other.yaml, this repro
    latest = max(runs, key=lambda r: r.info.start_time)
    assert latest.data.tags.get("mlflow.parentRunId") == parent
