"""`starflow lineage` and `starflow compare` on a real MLflow store.

Quick: stage runs made by ``flows/tracking.py`` the way the pipeline makes them (a dvc.lock
updated after each stage as ``dvc commit`` does), two pipeline runs, a model version each.
Slow: the tiny DAG for real (``starflow run``, then a run with one changed param), then the
CLI on ``@champion`` and on the challenger, checked against the workspace's dvc.lock.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from flows import lineage, tracking
from flows.cli import app
from flows.cli.lineage import compare_tables, lineage_text
from flows.config import Params
from tests.flows.test_tracking import md5_dir, params_for, record
from tests.paths import ROOT

runner = CliRunner()
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]


def pipeline_run(params: Params, stages: list[str], tag: str, model: str, changed: dict | None = None) -> dict:
    """What `starflow run` does for ``stages``: a pipeline run, each stage's run, its dvc commit,
    the evaluate run's model version, the pipeline run finished. The ids and md5s, by stage."""
    parent = tracking.start_pipeline_run(params, changed=changed)
    ids, md5s = {"pipeline": parent}, {}
    for stage in stages:
        with tracking.stage_run(stage, params, parent) as run:
            ids[stage] = run.info.run_id
        md5s[stage] = md5_dir(f"{tag}-{stage}")
        record(stage, {f"data/{stage}": md5s[stage]})
    client = MlflowClient()
    if "evaluate" in ids:
        ids["version"] = client.create_model_version(model, source=f"runs:/{ids['evaluate']}/model",
                                                     run_id=ids["evaluate"]).version
    tracking.finish_pipeline_run(parent, {s: 1.0 for s in stages})
    return {"ids": ids, "md5": md5s}


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """A git workspace: run 1 builds curate -> tokenize -> train -> evaluate (v1, dvc.lock
    committed), run 2 retrains with ``train.lr`` changed (v2, dvc.lock left uncommitted)."""
    ws, store = tmp_path_factory.mktemp("ws"), tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ws)
        # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI; another module's may linger.
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
        shutil.copy2(ROOT / "dvc.yaml", "dvc.yaml")
        subprocess.run(["git", "init", "-q"], check=True)
        subprocess.run([*GIT, "commit", "-q", "--allow-empty", "-m", "code"], check=True)
        params = params_for(store, "lineage", train={"max_steps": 13})
        tracking.setup_mlflow(params)
        MlflowClient().create_registered_model("coder")
        first = pipeline_run(params, ["curate", "tokenize", "train", "evaluate"], "one", "coder")
        subprocess.run(["git", "add", "dvc.lock"], check=True)
        subprocess.run([*GIT, "commit", "-q", "-m", "run 1"], check=True)
        lock_commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        changed = params_for(store, "lineage", train={"max_steps": 13, "lr": 5e-4})
        second = pipeline_run(changed, ["train", "evaluate"], "two", "coder", changed={"train.lr": 5e-4})
        (ws / "params.yaml").write_text(yaml.safe_dump(changed.model_dump(mode="json")))
        yield {"ws": ws, "first": first, "second": second, "lock_commit": lock_commit}


def test_lineage_walks_from_a_model_up_its_data(history, monkeypatch):
    monkeypatch.chdir(history["ws"])
    client = MlflowClient()
    first, second = history["first"], history["second"]
    found = lineage.lineage(client, lineage.resolve(client, f"models:/coder/{second['ids']['version']}", "coder",
                                                    "lineage"))
    # v2 was trained in run 2 on the data run 1 tokenized: its tokenize and curate runs are run 1's.
    assert {s: r.info.run_id for s, r in found.runs.items()} == {
        "curate": first["ids"]["curate"], "tokenize": first["ids"]["tokenize"], "train": second["ids"]["train"],
        "evaluate": second["ids"]["evaluate"]}
    assert found.data == {"data/curate": first["md5"]["curate"], "data/tokenize": first["md5"]["tokenize"],
                          "data/train": second["md5"]["train"]}
    assert found.pipeline.info.run_id == second["ids"]["pipeline"]
    # Its data versions are in no committed dvc.lock (run 2's lock is not committed), v1's are.
    v2 = found.to_dict("http://mlflow")
    assert any("not yet committed" in step for step in v2["restore"])
    v1 = lineage.lineage(client, lineage.resolve(client, str(first["ids"]["version"]), "coder", "lineage"))
    assert v1.to_dict("http://mlflow")["restore"][0].startswith(f"git checkout {history['lock_commit']}")


def test_datasets_digest_finds_every_run_built_on_a_data_version(history):
    client = MlflowClient()
    tokenize_md5 = history["first"]["md5"]["tokenize"]
    experiment = client.get_experiment_by_name("lineage").experiment_id
    runs = client.search_runs([experiment], f"datasets.digest = '{tokenize_md5}'")
    ids = history["first"]["ids"] | {f"2.{k}": v for k, v in history["second"]["ids"].items()}
    # Its producer, the four runs that read it (both trainings, both evaluations), both pipeline runs.
    assert {r.info.run_id for r in runs} == {ids[k] for k in ("tokenize", "train", "evaluate", "pipeline", "2.train",
                                                              "2.evaluate", "2.pipeline")}


def test_lineage_command_prints_commit_md5s_and_runs(history, monkeypatch):
    monkeypatch.chdir(history["ws"])
    result = runner.invoke(app, ["lineage", "models:/coder/1", "--params", "params.yaml"])
    assert result.exit_code == 0, result.output
    out = result.output
    for stage in ("curate", "tokenize", "train"):  # what v1 was built from (not its own evaluate output)
        assert f"data/{stage:<15} {history['first']['md5'][stage]}" in out
    commit = MlflowClient().get_run(history["first"]["ids"]["evaluate"]).data.tags["git.commit"]
    assert f"git commit: {commit}" in out and f"git checkout {history['lock_commit']}" in out
    as_json = json.loads(runner.invoke(app, ["lineage", "models:/coder/1", "--json"]).output)
    assert as_json["params"]["train.max_steps"] == "13"
    assert as_json["mlflow_runs"]["train"]["run_id"] == history["first"]["ids"]["train"]
    missing = runner.invoke(app, ["lineage", "models:/coder@nope"])
    assert missing.exit_code == 2 and "models:/coder@nope" in missing.output


def test_compare_shows_the_one_param_that_differs(history, monkeypatch):
    monkeypatch.chdir(history["ws"])
    first, second = history["first"]["ids"], history["second"]["ids"]
    result = json.loads(runner.invoke(app, ["compare", first["pipeline"], second["pipeline"], "--json"]).output)
    assert result["params"] == [{"name": "train.lr", "a": str(Params().train.lr), "b": "0.0005"}]
    metrics = {m["name"]: (m["a"], m["b"]) for m in result["metrics"]}
    assert metrics["wall_s.train"] == (1.0, 1.0) and metrics["wall_s.curate"] == (1.0, None)
    # Model versions compare as the pipeline runs that evaluated them; --all adds shared params.
    table = runner.invoke(app, ["compare", "models:/coder/1", "models:/coder/2", "--all"])
    assert table.exit_code == 0 and "train.lr" in table.output and "train.max_steps" in table.output


def test_compare_tables_and_lineage_text_format_what_they_are_given():
    side = {"run_id": "a" * 32, "name": "exp-1", "experiment": "exp-1", "commit": "c" * 40}
    result = {"a": side, "b": {**side, "experiment": ""},
              "params": [], "metrics": [{"name": "val_loss", "a": 2.123456789, "b": None}]}
    params, metrics = compare_tables(result)
    assert params.row_count == 1 and metrics.row_count == 1
    assert [c.header for c in params.columns][1].startswith("exp-1 [exp-1]")
    text = lineage_text({"model": None, "run_id": "r", "git_commit": None, "data": {}, "mlflow_runs": {},
                         "params": {"a": "1"}, "training_data": {},
                         "prefect_flow_run": {"id": None, "name": None, "url": None}, "restore": ["x"]}, {})
    assert "(none recorded)" in text and "(no datasets recorded)" in text and "0 differ" in text
    # A parameter run's data is in its DVC experiment's commit, which `dvc exp apply` restores.
    steps = lineage.restore_steps({"data/train": "0" * 32 + ".dir"}, "c" * 40, experiment="exp-lr")
    assert steps[0].startswith("dvc exp apply exp-lr") and "data/train" in steps[1]


def test_lineage_shows_the_parent_model_and_the_sources_of_a_continued_training(history, monkeypatch):
    """The train run's continuation tags (flows/train.py) and the sources' fingerprint ingest consumed
    (read from the DVC cache by its md5) are part of the lineage and of its text."""
    monkeypatch.chdir(history["ws"])
    client = MlflowClient()
    experiment = client.get_experiment_by_name("lineage").experiment_id
    tags = {"starflow.stage": "train", "starflow.init_from": "coder/1", "starflow.data_version": "d" * 32 + ".dir",
            "starflow.parent.model": "coder", "starflow.parent.version": "1", "starflow.parent.alias": "champion",
            "starflow.parent.run_id": "e" * 32, "starflow.parent.train_run_id": "f" * 32,
            "starflow.parent.data_version": "a" * 32 + ".dir"}
    run = client.get_run(client.create_run(experiment, tags=tags).info.run_id)
    training = lineage.training_lineage(run)
    assert training == {"init_from": "coder/1", "data_version": "d" * 32 + ".dir",
                        "parent": {"model": "coder", "version": "1", "alias": "champion", "run_id": "e" * 32,
                                   "train_run_id": "f" * 32, "data_version": "a" * 32 + ".dir"}}
    scratch = client.get_run(client.create_run(experiment, tags={"starflow.init_from": "scratch"}).info.run_id)
    assert lineage.training_lineage(scratch) == {"init_from": "scratch"} and lineage.training_lineage(None) is None

    source = {"source": "git /srv/app.git", "digest": "9" * 64, "heads": {"/srv/app.git": "1234567890ab" + "c" * 28}}
    found = {"model": None, "run_id": "r", "git_commit": None, "data": {}, "mlflow_runs": {}, "params": {},
             "training_data": {}, "prefect_flow_run": {"id": None, "name": None, "url": None}, "restore": [],
             "training": training, "sources": [source]}
    out = lineage_text(found, {})
    assert "parent models:/coder/1@champion" in out and "coder/1" in out
    assert "git /srv/app.git: /srv/app.git @ 1234567890ab" in out


@pytest.mark.slow
def test_sources_at_reads_the_fingerprint_ingest_consumed_from_the_dvc_cache(tmp_path, monkeypatch):
    # The fingerprint file as the sources stage leaves it (dvc commit: in the DVC cache), found by its md5.
    from flows import dvc_dag
    from flows.sources import check_sources
    from tests.flows.test_fingerprint import make_upstream

    bare, _ = make_upstream(tmp_path)
    ws = tmp_path / "ws"
    ws.mkdir()
    monkeypatch.chdir(ws)
    subprocess.run(["git", "init", "-q"], check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], check=True)
    sources = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["sources"]
    (ws / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"sources": {**sources, "deps": []}}}))
    check_sources(Params.model_validate({"ingest": {"sources": [{"kind": "git", "urls": [str(bare)]}]}}))
    dvc_dag.commit("sources")
    md5 = dvc_dag.locked("sources")["outs"][0]["md5"]
    [source] = lineage.sources_at(md5)
    written = json.loads((ws / "data" / "sources.json").read_text())
    assert source["source"] == f"git {bare}" and source["digest"] == written["sources"][0]["digest"]
    assert lineage.sources_at("0" * 32) == []


def test_the_cli_reads_the_store_of_the_folder_it_runs_in(tmp_path, monkeypatch):
    """MLflow caches a store per URI string: a relative ``sqlite:///mlflow.db`` opened in one
    folder would still be that folder's after a chdir (how the suite's modules met another's runs)."""
    import mlflow

    from flows.cli.lineage import _client

    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    # An earlier test's store and engine for the same relative URI string (their folder maybe
    # gone: "attempt to write a readonly database") must not stand in for folder a's.
    _tracking_store_registry._get_store_with_resolved_uri.cache_clear()
    stale = SqlAlchemyStore._engine_map.pop("sqlite:///mlflow.db", None)
    if stale is not None:
        stale.dispose()
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    monkeypatch.chdir(tmp_path / "a")
    mlflow.set_tracking_uri("sqlite:///mlflow.db")
    MlflowClient().create_experiment("only-in-a")
    monkeypatch.chdir(tmp_path / "b")
    client, _ = _client(tmp_path / "b" / "params.yaml")
    try:
        assert "only-in-a" not in [e.name for e in client.search_experiments()]
        assert (tmp_path / "b" / "mlflow.db").exists()
    finally:
        mlflow.set_tracking_uri(None)


# --- the tiny DAG for real --------------------------------------------------------------------

from tests.flows.test_pipeline import _run, _sh, workspace  # noqa: E402,F401  (the tiny workspace fixture)


@pytest.fixture(scope="module")
def tiny(workspace):
    """The tiny workspace at a commit; `starflow run`; then one with ``evaluate.fim.limit`` changed
    (only evaluate runs again: a second model version, trained on the same data)."""
    _sh(workspace, "git", "add", "-A")
    _sh(workspace, *GIT, "commit", "-q", "-m", "workspace")
    first = _run(workspace)
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["evaluate"]["fim"]["limit"] = 5
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    second = _run(workspace)
    assert second["ran"] == ["evaluate"]
    return {"ws": workspace, "first": first, "second": second,
            "commit": _sh(workspace, "git", "rev-parse", "HEAD").stdout.strip(),
            "lock": {o["path"]: o["md5"] for s in yaml.safe_load((workspace / "dvc.lock").read_text())["stages"].values()
                     for o in s.get("outs", [])}}


def _cli(tiny, monkeypatch, *args: str) -> str:
    import mlflow

    monkeypatch.chdir(tiny["ws"])
    result = runner.invoke(app, list(args))
    mlflow.set_tracking_uri(None)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow
@pytest.mark.parametrize("model", ["models:/starflow-coder@champion", "models:/starflow-coder@challenger"])
def test_lineage_of_a_trained_model_matches_dvc_lock(tiny, monkeypatch, model):
    out = _cli(tiny, monkeypatch, "lineage", model)
    for path in ("data/tokenize", "data/train"):
        assert f"{path:<20} {tiny['lock'][path]}" in out
    assert f"git commit: {tiny['commit']}" in out
    found = json.loads(_cli(tiny, monkeypatch, "lineage", model, "--json"))
    client = MlflowClient(f"sqlite:///{tiny['ws'] / 'mlflow.db'}")
    pipeline = client.get_run(found["pipeline_run_id"])
    flow_run_id = pipeline.data.tags["prefect.flow_run_id"]
    assert f"Prefect flow run: {flow_run_id}" in out and found["prefect_flow_run"]["id"] == flow_run_id
    assert {k: found["data"][k] for k in ("data/tokenize", "data/train")} == \
        {k: tiny["lock"][k] for k in ("data/tokenize", "data/train")}
    assert {"ingest", "dedup", "curate", "tokenize", "train", "evaluate"} <= set(found["mlflow_runs"])
    assert found["training_data"] and found["params"]["train.max_steps"] == "30"
    # Up to the sources: the fingerprint ingest consumed, as dvc.lock has it, read back from the DVC cache.
    assert found["data"]["data/sources.json"] == tiny["lock"]["data/sources.json"]
    assert sorted(s["source"] for s in found["sources"]) == ["directory corpus", "python_env 6 distributions"]
    assert "sources (the fingerprint ingest consumed)" in out and "directory corpus: " in out
    assert found["training"]["init_from"] == "scratch" and "trained from" in out


@pytest.mark.slow
def test_datasets_digest_finds_the_train_run_of_a_data_version(tiny):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tiny['ws'] / 'mlflow.db'}")
    try:
        runs = mlflow.search_runs(experiment_names=["starflow"], output_format="list",
                                  filter_string=f"datasets.digest = '{tiny['lock']['data/tokenize']}'")
    finally:
        mlflow.set_tracking_uri(None)
    stages = sorted(r.data.tags.get("starflow.stage", "pipeline") for r in runs)
    # tokenize wrote it; train and attribution-free evaluate (twice) read it; both pipeline runs hold it.
    assert "train" in stages and "tokenize" in stages and stages.count("evaluate") == 2
    train = next(r for r in runs if r.data.tags.get("starflow.stage") == "train")
    assert train.data.tags["mlflow.parentRunId"] == tiny["first"]["mlflow_parent_run_id"]


@pytest.mark.slow
def test_compare_two_pipeline_runs_prints_their_differing_param(tiny, monkeypatch):
    a, b = tiny["first"]["mlflow_parent_run_id"], tiny["second"]["mlflow_parent_run_id"]
    result = json.loads(_cli(tiny, monkeypatch, "compare", a, b, "--json"))
    assert result["params"] == [{"name": "evaluate.fim.limit", "a": "8", "b": "5"}]
    metrics = {m["name"]: (m["a"], m["b"]) for m in result["metrics"]}
    assert metrics["humaneval.pass_1"][0] is not None and metrics["fim_exact_match"][1] is not None
    table = _cli(tiny, monkeypatch, "compare", a, b)
    assert "evaluate.fim.limit" in table and "humaneval.pass_1" in table
