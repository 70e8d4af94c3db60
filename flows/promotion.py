"""The promotion gate: ``challenger`` becomes ``champion`` only if it is better by a margin.

Every evaluated model version gets alias ``challenger`` and a tag ``gate.<metric>`` with its
score (``@`` spelled ``_``, as MLflow metric names are). The gate then compares it with the version holding ``champion``:

* no champion yet: the challenger is promoted (someone has to be first);
* the champion has no score for the gate metric (the metric was changed in params): its
  evaluate run's logged metric is used; failing that the challenger is promoted, since the
  two cannot be compared and the newest evaluation is the one made under today's gate;
* otherwise the challenger is promoted only if it beats the champion by more than
  ``margin`` in the configured direction; a non-finite challenger score never wins.

The decision and both scores are tagged on the model version and on the evaluate MLflow
run (``promotion.*``) and published as a Prefect markdown artifact (``evaluate-promotion``).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from ray_tasks.evaluate.params import GateParams

CHALLENGER, CHAMPION = "challenger", "champion"


@dataclass
class GateDecision:
    promoted: bool
    metric: str
    direction: str
    margin: float
    challenger_version: str
    challenger_score: float
    champion_version: str | None
    """The champion before this decision (None: there was none)."""
    champion_score: float | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def markdown(self, model_name: str) -> str:
        verdict = "**promoted** to champion" if self.promoted else "**not promoted**; the champion stays"
        champ = f"v{self.champion_version}" if self.champion_version else "none"
        return (
            f"### Promotion gate: {model_name} v{self.challenger_version} {verdict}\n\n"
            f"| | version | {self.metric} |\n|---|---|---|\n"
            f"| challenger | v{self.challenger_version} | {_fmt(self.challenger_score)} |\n"
            f"| champion (before) | {champ} | {_fmt(self.champion_score)} |\n\n"
            f"Rule: {self.direction} is better, by more than {self.margin}. Reason: {self.reason}.\n"
        )


def metric_value(stats: dict[str, Any], dotted: str) -> float:
    """``stats["humaneval"]["pass@1"]`` for ``"humaneval.pass@1"``."""
    node: Any = stats
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"gate metric {dotted!r} is not in the evaluate metrics ({sorted(stats)})")
        node = node[part]
    return float(node)


def beats(challenger: float, champion: float, gate: GateParams) -> bool:
    if not math.isfinite(challenger):
        return False
    if gate.direction == "higher":
        return challenger > champion + gate.margin
    return challenger < champion - gate.margin


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
    if champion is None:
        promoted, reason = True, "no champion yet"
    elif str(champion.version) == version:
        promoted, reason = True, "already champion"
    elif champ_score is None:
        promoted, reason = True, f"champion v{champion.version} has no {gate.metric} to compare with"
    else:
        promoted = beats(score, champ_score, gate)
        delta = score - champ_score
        reason = (f"{gate.metric} {_fmt(score)} vs {_fmt(champ_score)} (difference {delta:+.6g}, "
                  f"needs {'>' if gate.direction == 'higher' else '<'} {'+' if gate.direction == 'higher' else '-'}{gate.margin})")
    if promoted:
        client.set_registered_model_alias(model_name, CHAMPION, version)
    decision = GateDecision(promoted, gate.metric, gate.direction, gate.margin, version, score,
                            str(champion.version) if champion else None, champ_score, reason)
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
        key = _mlflow_name(metric)  # as tracking.publish_metrics names them
        if key in logged:
            return float(logged[key])
    return None


def _mlflow_name(metric: str) -> str:
    return re.sub(r"[^\w\-. /]", "_", metric)


def _gate_tag(metric: str) -> str:
    """``gate.humaneval.pass_1``: the version's score for a metric (MLflow keys allow no ``@``)."""
    return f"gate.{_mlflow_name(metric)}"


def _record(client: MlflowClient, model_name: str, d: GateDecision, run_id: str | None) -> None:
    tags = {
        "promotion.decision": "promoted" if d.promoted else "rejected",
        "promotion.metric": d.metric,
        "promotion.challenger_score": _fmt(d.challenger_score),
        "promotion.champion_score": _fmt(d.champion_score),
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
        create_markdown_artifact(key="evaluate-promotion", markdown=d.markdown(model_name),
                                 description=f"promotion gate for {model_name} v{d.challenger_version}")


def _fmt(x: float | None) -> str:
    return "none" if x is None else f"{x:.6g}"
