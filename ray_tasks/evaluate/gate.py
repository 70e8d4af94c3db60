"""The promotion gate's rule: does the challenger beat the champion? (No registry here.)

Both scores come from the same evaluate run, on the same evaluation data with the same
settings (``flows/evaluate.py`` loads the champion's weights from the registry and scores it
next to the challenger), so they are comparable by construction. Then:

* no champion yet: the challenger is promoted (someone has to be first);
* the challenger is the champion (the same weights, so the same registered version): nothing
  changes, and the decision says so (not promoted);
* the champion could not be scored (its weights could not be loaded): not promoted, since
  nothing was compared; the reason says why;
* otherwise the challenger is promoted only if it beats the champion by more than ``margin``
  in the configured direction; a non-finite challenger score never wins.

``flows/promotion.py`` applies ``decide`` on the MLflow registry and records the decision.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from ray_tasks.evaluate.params import GateParams


@dataclass
class GateDecision:
    """What the gate decided and why (tagged on the version and the run, shown as an artifact)."""

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
    evidence: dict[str, Any] = field(default_factory=dict)
    """What both scores were measured on: the evaluation data (path, md5, version), the settings,
    the run that scored both."""

    @property
    def outcome(self) -> str:
        """``promoted``, ``rejected`` or ``unchanged`` (the challenger already was the champion)."""
        if self.promoted:
            return "promoted"
        return "unchanged" if self.champion_version == self.challenger_version else "rejected"

    def as_dict(self) -> dict[str, Any]:
        return {"promoted": self.promoted, "decision": self.outcome, "metric": self.metric,
                "direction": self.direction, "margin": self.margin, "challenger_version": self.challenger_version,
                "challenger_score": self.challenger_score, "champion_version": self.champion_version,
                "champion_score": self.champion_score, "reason": self.reason, **self.evidence}

    def markdown(self, model_name: str) -> str:
        verdict = "**promoted** to champion" if self.promoted else "**not promoted**; the champion stays"
        champ = f"v{self.champion_version}" if self.champion_version else "none"
        return (
            f"### Promotion gate: {model_name} v{self.challenger_version} {verdict}\n\n"
            f"| | version | {self.metric} |\n|---|---|---|\n"
            f"| challenger | v{self.challenger_version} | {fmt_score(self.challenger_score)} |\n"
            f"| champion (before) | {champ} | {fmt_score(self.champion_score)} |\n\n"
            f"Both scored in the same run on the same data with the same settings. "
            f"Rule: {self.direction} is better, by more than {self.margin}. Reason: {self.reason}.\n"
            + "".join(f"\n* {k}: `{json.dumps(v, sort_keys=True)}`" for k, v in self.evidence.items())
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
    """Better by more than the margin, in the gate's direction; NaN or infinity never wins."""
    if not math.isfinite(challenger):
        return False
    if gate.direction == "higher":
        return challenger > champion + gate.margin
    return challenger < champion - gate.margin


def decide(gate: GateParams, version: str, score: float, champion_version: str | None,
           champion_score: float | None, evidence: dict[str, Any] | None = None,
           unscored_reason: str | None = None) -> GateDecision:
    """The decision for challenger ``version`` (``score``) against the champion (None: none yet),
    both scored in the same run. ``unscored_reason``: why the champion has no score."""
    if champion_version is None:
        promoted, reason = True, "no champion yet"
    elif champion_version == version:
        promoted, reason = False, f"v{version} is the champion already (same weights)"
    elif champion_score is None:
        promoted, reason = False, f"champion v{champion_version} was not scored: {unscored_reason or 'no score'}"
    else:
        promoted = beats(score, champion_score, gate)
        higher = gate.direction == "higher"
        reason = (f"{gate.metric} {fmt_score(score)} vs {fmt_score(champion_score)} "
                  f"(difference {score - champion_score:+.6g}, "
                  f"needs {'>' if higher else '<'} {'+' if higher else '-'}{gate.margin})")
    return GateDecision(promoted, gate.metric, gate.direction, gate.margin, version, score,
                        champion_version, champion_score, reason, dict(evidence or {}))


def fmt_score(x: float | None) -> str:
    """A score as the tags and the artifact show it."""
    return "none" if x is None else f"{x:.6g}"
