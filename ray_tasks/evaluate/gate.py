"""The promotion gate's rule: does the challenger beat the champion? (No registry here.)

Given the challenger's score for the gate metric and the champion's (if any):

* no champion yet: the challenger is promoted (someone has to be first);
* the challenger already is the champion: it stays;
* the champion has no score for the gate metric (the metric was changed in params, and no
  logged metric of its evaluate run could stand in): the challenger is promoted, since the
  two cannot be compared and the newest evaluation is the one made under today's gate;
* otherwise the challenger is promoted only if it beats the champion by more than
  ``margin`` in the configured direction; a non-finite challenger score never wins.

``flows/promotion.py`` reads the scores from the MLflow registry, applies ``decide`` and
moves the aliases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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

    def markdown(self, model_name: str) -> str:
        verdict = "**promoted** to champion" if self.promoted else "**not promoted**; the champion stays"
        champ = f"v{self.champion_version}" if self.champion_version else "none"
        return (
            f"### Promotion gate: {model_name} v{self.challenger_version} {verdict}\n\n"
            f"| | version | {self.metric} |\n|---|---|---|\n"
            f"| challenger | v{self.challenger_version} | {fmt_score(self.challenger_score)} |\n"
            f"| champion (before) | {champ} | {fmt_score(self.champion_score)} |\n\n"
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
    """Better by more than the margin, in the gate's direction; NaN or infinity never wins."""
    if not math.isfinite(challenger):
        return False
    if gate.direction == "higher":
        return challenger > champion + gate.margin
    return challenger < champion - gate.margin


def decide(gate: GateParams, version: str, score: float, champion_version: str | None,
           champion_score: float | None) -> GateDecision:
    """The decision for challenger ``version`` (``score``) against the champion (None: none yet)."""
    if champion_version is None:
        promoted, reason = True, "no champion yet"
    elif champion_version == version:
        promoted, reason = True, "already champion"
    elif champion_score is None:
        promoted, reason = True, f"champion v{champion_version} has no {gate.metric} to compare with"
    else:
        promoted = beats(score, champion_score, gate)
        higher = gate.direction == "higher"
        reason = (f"{gate.metric} {fmt_score(score)} vs {fmt_score(champion_score)} "
                  f"(difference {score - champion_score:+.6g}, "
                  f"needs {'>' if higher else '<'} {'+' if higher else '-'}{gate.margin})")
    return GateDecision(promoted, gate.metric, gate.direction, gate.margin, version, score,
                        champion_version, champion_score, reason)


def fmt_score(x: float | None) -> str:
    """A score as the tags and the artifact show it."""
    return "none" if x is None else f"{x:.6g}"
