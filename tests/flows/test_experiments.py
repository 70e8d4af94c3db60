"""Parameter runs are DVC experiments: real Prefect, DVC, MLflow and git in a scratch workspace.

A full run of the tiny DAG, then a run with one evaluate setting changed: only evaluate runs,
`dvc exp show` lists the experiment with that setting, MLflow's runs carry its name and the
setting, and the working copy's params.yaml, dvc.lock and git status are as they were.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from flows.config import ConfigError
from flows.experiments import resolve
from tests.flows.test_pipeline import BIN, STAGES, _env, _mlflow, _run, _sh, workspace  # noqa: F401  (fixture)
from tests.paths import ROOT

TINY = ROOT / "params.tiny.yaml"


@pytest.mark.parametrize("override, named", [
    ("evaluate.perplexity_batchez=8", "'evaluate.perplexity_batchez'"),
    ("evaluate.perplexity_batches=-1", "evaluate.perplexity_batches"),
    ("train.lr=fast", "train.lr"),
    ("ingest.sources.7.path=x", "ingest.sources"),
    ("train.lr", "dotted.key=value"),
])
def test_bad_override_names_the_key(override, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        resolve(TINY, {}, [override])


def test_overrides_and_sections_yield_only_what_changed():
    from flows.config import load_params

    base = load_params(TINY)
    # A form section holds every default; only the field that differs is a change.
    wanted = resolve(TINY, {"train": base.train.model_copy(update={"max_steps": 7}), "dedup": base.dedup},
                     ["train.lr=3e-4", "evaluate.perplexity_batches=4"])  # 4 is params.tiny.yaml's already
    assert wanted.changed == {"train.max_steps": 7, "train.lr": 0.0003}
    assert wanted.params.train.lr == 0.0003 and wanted.params.train.max_steps == 7
    raw = yaml.safe_load(TINY.read_text())
    assert wanted.raw["train"] == {**raw["train"], "max_steps": 7, "lr": 0.0003}  # no defaults spelled out
    assert {k: v for k, v in wanted.raw.items() if k != "train"} == {k: v for k, v in raw.items() if k != "train"}


def test_the_flow_refuses_a_bad_override_before_anything_runs(in_tmp):
    from flows.pipeline import pipeline

    shutil.copy2(TINY, in_tmp / "params.yaml")
    with pytest.raises(ConfigError, match=r"'train\.lrr'"):
        pipeline.fn(overrides=["train.lrr=1"])
    assert sorted(p.name for p in in_tmp.iterdir()) == ["params.yaml"]


@pytest.fixture(scope="module")
def committed(workspace):  # noqa: F811  (the fixture imported above)
    """The scratch workspace as a git repository with a first commit (an experiment is a commit on top)."""
    shutil.copy2(ROOT / ".gitignore", workspace / ".gitignore")
    (workspace / ".gitignore").write_text((workspace / ".gitignore").read_text() + "/.prefect-home/\n")
    # Numba's cache files (ray_tasks/dedup/__pycache__) are written by a run; a fresh checkout lacks them.
    # Hashed into dedup's code dep they make dedup stale in the experiment's worktree for nothing.
    with (workspace / ".dvcignore").open("a") as f:
        f.write("__pycache__/\n")
    for cmd in (["config", "user.email", "ci@example.com"], ["config", "user.name", "ci"], ["add", "-A"],
                ["commit", "-q", "-m", "scratch workspace"]):
        _sh(workspace, "git", *cmd)
    return workspace


@pytest.mark.slow
def test_bad_set_fails_before_anything_runs(committed):
    proc = subprocess.run([str(BIN / "starflow"), "run", "--set", "train.lrr=1"], cwd=committed, env=_env(committed),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "'train.lrr'" in proc.stderr
    assert not (committed / "dvc.lock").exists() and not (committed / ".starflow" / "last_run.json").exists()


@pytest.mark.slow
def test_parameter_run_is_a_dvc_experiment(committed):
    ws = committed
    assert _run(ws)["ran"] == STAGES
    # Not committed: the experiment starts from the working copy's dvc.lock, as `dvc exp run` does.
    before = {f: (ws / f).read_bytes() for f in ("params.yaml", "dvc.lock")}
    status = _sh(ws, "git", "status", "--porcelain").stdout
    assert " M dvc.lock" in status.splitlines() or "?? dvc.lock" in status.splitlines()

    summary = _run(ws, "--set", "evaluate.perplexity_batches=2", "--set", "evaluate.fim.limit=3")
    name = summary["experiment"]
    assert summary["ran"] == ["evaluate"] and summary["skipped"] == STAGES[:-1]
    assert summary["changed"] == {"evaluate.perplexity_batches": 2, "evaluate.fim.limit": 3}

    # The working copy is as it was, and the worktree is gone.
    assert {f: (ws / f).read_bytes() for f in before} == before
    assert _sh(ws, "git", "status", "--porcelain").stdout == status
    assert len(_sh(ws, "git", "worktree", "list").stdout.splitlines()) == 1
    assert json.loads(_sh(ws, "dvc", "status", "--json").stdout) == {"sources": ["always changed"]}  # nothing else

    shown = json.loads(_sh(ws, "dvc", "exp", "show", "--json").stdout)
    exps = {e["name"]: e["revs"][0]["data"] for base in shown for e in (base.get("experiments") or [])}
    assert name in exps
    evaluate = exps[name]["params"]["params.yaml"]["data"]["evaluate"]
    assert evaluate["perplexity_batches"] == 2 and evaluate["fim"]["limit"] == 3
    assert exps[name]["metrics"]["metrics/evaluate.json"]["data"]["fim_examples"] == 3
    # Its outputs are in the workspace's cache: `dvc exp apply` / `dvc exp branch` can restore them.
    md5 = exps[name]["outs"]["data/evaluate"]["hash"]
    assert (ws / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]).exists()
    assert md5 != yaml.safe_load(before["dvc.lock"])["stages"]["evaluate"]["outs"][0]["md5"]

    client = _mlflow(ws)
    parent = client.get_run(summary["mlflow_parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["prefect.flow_run_name"] == name  # named after the Prefect flow run
    assert parent.data.tags.get("starflow.experiment") == name
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert [r.data.tags["starflow.stage"] for r in children] == ["evaluate"]
    child = children[0]
    assert child.data.params["evaluate.perplexity_batches"] == "2" and child.data.params["evaluate.fim.limit"] == "3"
    assert child.data.tags.get("starflow.experiment") == name
    assert child.data.tags["prefect.flow_run_id"] != parent.data.tags["prefect.flow_run_id"]  # its own child flow run


@pytest.mark.slow
def test_named_experiment_of_chosen_stages_then_restored(committed):
    ws = committed
    summary = _run(ws, "--set", "evaluate.fim.limit=2", "--name", "fim-two", "--only", "evaluate", "--force", "train")
    assert summary["experiment"] == "fim-two" and summary["ran"] == ["evaluate"]
    assert summary["excluded"] == STAGES[:-1]  # train was forced, but not among the stages asked for
    assert "fim-two" in _sh(ws, "dvc", "exp", "ls").stdout
    proc = subprocess.run([str(BIN / "starflow"), "run", "--set", "evaluate.fim.limit=1", "--name", "fim-two"],
                          cwd=ws, env=_env(ws), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "'fim-two' exists already" in proc.stderr
    # The experiment holds what it ran: applied, the working copy has its params and outputs, all up to date.
    _sh(ws, "dvc", "exp", "apply", "fim-two")
    assert yaml.safe_load((ws / "params.yaml").read_text())["evaluate"]["fim"]["limit"] == 2
    assert json.loads((ws / "metrics" / "evaluate.json").read_text())["fim_examples"] == 2
    assert json.loads(_sh(ws, "dvc", "status", "--json").stdout) == {"sources": ["always changed"]}  # nothing else
