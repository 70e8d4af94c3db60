"""The promotion rule on its own (the registry side is tests/flows/test_promotion.py)."""

from __future__ import annotations

import math

import pytest

from ray_tasks.evaluate.gate import beats, decide, metric_value
from ray_tasks.evaluate.params import GateParams


def test_rules():
    higher = GateParams(metric="fim_exact_match", direction="higher", margin=0.1)
    assert beats(0.5, 0.3, higher) and not beats(0.4, 0.3, higher) and not beats(math.nan, 0.3, higher)
    lower = GateParams(metric="perplexity", direction="lower", margin=0.0)
    assert beats(2.0, 3.0, lower) and not beats(3.0, 3.0, lower) and not beats(math.inf, 3.0, lower)
    assert metric_value({"humaneval": {"pass@1": 0.25}}, "humaneval.pass@1") == 0.25
    with pytest.raises(KeyError, match="not in the evaluate metrics"):
        metric_value({"perplexity": 3.0}, "mbpp.pass@1")


def test_decisions():
    gate = GateParams(metric="perplexity", direction="lower", margin=0.5)
    first = decide(gate, "1", 9.0, None, None)
    assert first.promoted and first.reason == "no champion yet" and first.champion_version is None
    same = decide(gate, "2", 9.0, "2", 9.0)  # the same weights are the same version: nothing changes
    assert not same.promoted and same.outcome == "unchanged" and "same weights" in same.reason
    unscored = decide(gate, "3", 1.0, "2", None, unscored_reason="its weights could not be loaded")
    assert not unscored.promoted and unscored.outcome == "rejected" and "could not be loaded" in unscored.reason
    close = decide(gate, "3", 8.7, "2", 9.0)
    assert not close.promoted and close.reason == "perplexity 8.7 vs 9 (difference -0.3, needs < -0.5)"
    assert decide(gate, "3", 8.0, "2", 9.0).promoted
    assert not decide(gate, "3", math.nan, "2", 9.0).promoted
    assert "| champion (before) | v2 | 9 |" in close.markdown("m")


def test_decision_carries_its_evidence():
    gate = GateParams(metric="frozen_sample.bits_per_byte", direction="lower", margin=0.01)
    evidence = {"scored_in_run": "r1", "evaluation_data": {"md5": "abc", "version": 2}, "settings": {"w": 64}}
    d = decide(gate, "4", 1.50, "3", 1.60, evidence)
    assert d.promoted and d.as_dict()["evaluation_data"] == {"md5": "abc", "version": 2}
    assert d.as_dict()["champion_score"] == 1.60 and d.as_dict()["decision"] == "promoted"
    assert '"md5": "abc"' in d.markdown("m") and "same run" in d.markdown("m")


def test_only_metrics_the_gate_can_measure_for_the_champion():
    from ray_tasks.evaluate.params import EvaluateParams

    with pytest.raises(ValueError, match="scores the champion again"):
        GateParams(metric="mbpp.pass@1")
    with pytest.raises(ValueError, match="not in humaneval.ks"):
        EvaluateParams(gate={"metric": "humaneval.pass@10", "direction": "higher"})
    assert EvaluateParams(gate={"metric": "humaneval.pass@1", "direction": "higher"}).gate.metric == "humaneval.pass@1"
