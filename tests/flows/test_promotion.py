"""The promotion gate on a real MLflow registry (SQLite in tmp) and a real Prefect artifact."""

from __future__ import annotations

import re

import mlflow
import pytest
from mlflow import MlflowClient

from flows.promotion import CHALLENGER, CHAMPION, mark_challenger, run_gate
from ray_tasks.evaluate.params import GateParams


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite store per module (creating its tables takes seconds); a model name per test."""
    tmp = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment("gate", artifact_location=(tmp / "artifacts").as_uri())
    yield uri, exp
    mlflow.set_tracking_uri(None)


@pytest.fixture
def registry(store, request):
    """(client, experiment, model name): a fresh registered model for this test."""
    uri, exp = store
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    name = re.sub(r"[^\w-]", "-", request.node.name)[:60]
    client.create_registered_model(name)
    return client, exp, name


def evaluated(client: MlflowClient, exp: str, name: str, stats: dict) -> tuple[str, str]:
    """What the evaluate stage does before the gate: a run with metrics, a version, alias challenger."""
    with mlflow.start_run(experiment_id=exp) as run:
        mlflow.log_metrics({"perplexity": stats["perplexity"], "humaneval.pass_1": stats["humaneval"]["pass@1"]})
    version = client.create_model_version(name, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id).version
    mark_challenger(client, name, version, run.info.run_id)
    return str(version), run.info.run_id


def alias(client: MlflowClient, model: str, name: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(model, name).version)
    except mlflow.exceptions.MlflowException:
        return None


def test_better_challenger_is_promoted_worse_one_is_not(registry):
    client, exp, name = registry
    gate = GateParams(metric="humaneval.pass@1", direction="higher", margin=0.05)

    v1, run1 = evaluated(client, exp, name, {"perplexity": 9.0, "humaneval": {"pass@1": 0.20}})
    first = run_gate(client, name, v1, {"perplexity": 9.0, "humaneval": {"pass@1": 0.20}}, gate, run1)
    assert first.promoted and first.reason == "no champion yet" and alias(client, name, CHAMPION) == v1

    # Better, but not by more than the margin: the champion stays.
    v2, run2 = evaluated(client, exp, name, {"perplexity": 8.0, "humaneval": {"pass@1": 0.24}})
    close = run_gate(client, name, v2, {"perplexity": 8.0, "humaneval": {"pass@1": 0.24}}, gate, run2)
    assert not close.promoted and alias(client, name, CHAMPION) == v1 and alias(client, name, CHALLENGER) == v2
    assert close.champion_score == pytest.approx(0.20) and close.challenger_score == pytest.approx(0.24)

    # Better by more than the margin: promoted.
    v3, run3 = evaluated(client, exp, name, {"perplexity": 7.0, "humaneval": {"pass@1": 0.30}})
    better = run_gate(client, name, v3, {"perplexity": 7.0, "humaneval": {"pass@1": 0.30}}, gate, run3)
    assert better.promoted and better.champion_version == v1 and alias(client, name, CHAMPION) == v3

    # Worse: not promoted; the decision and both scores are tags on the version and the run.
    v4, run4 = evaluated(client, exp, name, {"perplexity": 6.0, "humaneval": {"pass@1": 0.10}})
    worse = run_gate(client, name, v4, {"perplexity": 6.0, "humaneval": {"pass@1": 0.10}}, gate, run4)
    assert not worse.promoted and alias(client, name, CHAMPION) == v3 and alias(client, name, CHALLENGER) == v4
    tags = client.get_model_version(name, v4).tags
    assert tags["promotion.decision"] == "rejected" and tags["promotion.champion_version"] == v3
    assert float(tags["promotion.challenger_score"]) == 0.10 and float(tags["promotion.champion_score"]) == 0.30
    run_tags = client.get_run(run4).data.tags
    assert run_tags["promotion.decision"] == "rejected" and float(run_tags["promotion.champion_score"]) == 0.30
    assert client.get_model_version(name, v3).tags["promotion.decision"] == "promoted"


@pytest.mark.slow
def test_lower_is_better_and_changed_metric_falls_back_to_the_logged_run_metric(registry):
    client, exp, name = registry
    v1, run1 = evaluated(client, exp, name, {"perplexity": 9.0, "humaneval": {"pass@1": 0.0}})
    run_gate(client, name, v1, {"perplexity": 9.0, "humaneval": {"pass@1": 0.0}},
             GateParams(metric="humaneval.pass@1", direction="higher"), run1)
    # The gate now uses perplexity: v1 has no gate.perplexity tag, its run's logged metric is used.
    gate = GateParams(metric="perplexity", direction="lower", margin=0.5)
    v2, run2 = evaluated(client, exp, name, {"perplexity": 8.7, "humaneval": {"pass@1": 0.0}})
    d = run_gate(client, name, v2, {"perplexity": 8.7, "humaneval": {"pass@1": 0.0}}, gate, run2)
    assert d.champion_score == 9.0 and not d.promoted and alias(client, name, CHAMPION) == v1
    v3, run3 = evaluated(client, exp, name, {"perplexity": 8.0, "humaneval": {"pass@1": 0.0}})
    assert run_gate(client, name, v3, {"perplexity": 8.0, "humaneval": {"pass@1": 0.0}}, gate, run3).promoted
    assert alias(client, name, CHAMPION) == v3


@pytest.mark.slow
def test_decision_is_a_prefect_artifact(registry, prefect_harness):
    from prefect import flow
    from prefect.artifacts import Artifact

    client, exp, name = registry
    gate = GateParams(metric="perplexity", direction="lower")
    stats = [{"perplexity": 5.0, "humaneval": {"pass@1": 0.0}}, {"perplexity": 6.0, "humaneval": {"pass@1": 0.0}}]

    @flow
    def gate_flow(stats: dict) -> bool:
        version, run_id = evaluated(client, exp, name, stats)
        return run_gate(client, name, version, stats, gate, run_id).promoted

    assert gate_flow(stats[0]) is True
    assert gate_flow(stats[1]) is False
    artifact = Artifact.get("evaluate-promotion")
    assert "not promoted" in artifact.data and "| 6 |" in artifact.data and "| 5 |" in artifact.data
