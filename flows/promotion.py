"""The promotion gate on the MLflow registry: ``challenger`` becomes ``champion`` only if it is better by a margin.

Every evaluated model version gets alias ``challenger`` and a tag ``gate.<metric>`` with its
score (``@`` spelled ``_``, as MLflow metric names are). The gate then finds the version
holding ``champion`` and its score: its ``gate.<metric>`` tag or, when the metric was changed
in params since it was evaluated, its evaluate run's logged metric. The rule itself (no
champion, no comparable score, better by more than ``margin``) is
``ray_tasks/evaluate/gate.py``.

The decision and both scores are tagged on the model version and on the evaluate MLflow
run (``promotion.*``) and published as a Prefect markdown artifact (``evaluate-promotion``).
"""

from __future__ import annotations

from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from flows.tracking import artifact_key, mlflow_key
from ray_tasks.evaluate.gate import GateDecision, decide, fmt_score, metric_value
from ray_tasks.evaluate.params import GateParams

CHALLENGER, CHAMPION = "challenger", "champion"


def mark_challenger(client: MlflowClient, model_name: str, version: str, run_id: str | None = None) -> None:
    client.set_registered_model_alias(model_name, CHALLENGER, version)
    if run_id:
        client.set_model_version_tag(model_name, version, "evaluate_run_id", run_id)


def run_gate(client: MlflowClient, model_name: str, version: str, stats: dict[str, Any], gate: GateParams,
             run_id: str | None = None) -> GateDecision:
    """Compare challenger ``version`` (scored by ``stats``) with the champion; move the alias."""
    version = str(version)
    score = metric_value(stats, gate.metric)
    client.set_model_version_tag(model_name, version, _gate_tag(gate.metric), repr(score))
    champion = _champion(client, model_name)
    champ_score = _score_of(client, champion, gate.metric) if champion else None
    decision = decide(gate, version, score, str(champion.version) if champion else None, champ_score)
    if decision.promoted:
        client.set_registered_model_alias(model_name, CHAMPION, version)
    _record(client, model_name, decision, run_id)
    return decision


def _champion(client: MlflowClient, model_name: str):
    try:
        return client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None


def _score_of(client: MlflowClient, version, metric: str) -> float | None:
    raw = version.tags.get(_gate_tag(metric))
    if raw is not None:
        return float(raw)
    run_id = version.tags.get("evaluate_run_id")
    if run_id:
        logged = client.get_run(run_id).data.metrics
        key = mlflow_key(metric)
        if key in logged:
            return float(logged[key])
    return None


def _gate_tag(metric: str) -> str:
    """``gate.humaneval.pass_1``: the version's score for a metric (MLflow keys allow no ``@``)."""
    return f"gate.{mlflow_key(metric)}"


def _record(client: MlflowClient, model_name: str, d: GateDecision, run_id: str | None) -> None:
    tags = {
        "promotion.decision": "promoted" if d.promoted else "rejected",
        "promotion.metric": d.metric,
        "promotion.challenger_score": fmt_score(d.challenger_score),
        "promotion.champion_score": fmt_score(d.champion_score),
        "promotion.champion_version": d.champion_version or "",
        "promotion.reason": d.reason,
    }
    for key, value in tags.items():
        client.set_model_version_tag(model_name, d.challenger_version, key, value)
        if run_id:
            client.set_tag(run_id, key, value)
    from prefect.artifacts import create_markdown_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is not None:  # artifacts need a flow run (plain calls in tests have none)
        create_markdown_artifact(key=artifact_key("evaluate-promotion"), markdown=d.markdown(model_name),
                                 description=f"promotion gate for {model_name} v{d.challenger_version}")

