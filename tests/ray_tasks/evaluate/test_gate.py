"""The promotion rule on its own (the registry side is tests/flows/test_promotion.py)."""

from __future__ import annotations

import math

import pytest

from ray_tasks.evaluate.gate import beats, decide, metric_value
from ray_tasks.evaluate.params import GateParams


def test_rules():
    higher = GateParams(metric="m", direction="higher", margin=0.1)
    assert beats(0.5, 0.3, higher) and not beats(0.4, 0.3, higher) and not beats(math.nan, 0.3, higher)
    lower = GateParams(metric="m", direction="lower", margin=0.0)
    assert beats(2.0, 3.0, lower) and not beats(3.0, 3.0, lower) and not beats(math.inf, 3.0, lower)
    assert metric_value({"humaneval": {"pass@1": 0.25}}, "humaneval.pass@1") == 0.25
    with pytest.raises(KeyError, match="not in the evaluate metrics"):
        metric_value({"perplexity": 3.0}, "mbpp.pass@1")


def test_decisions():
    gate = GateParams(metric="perplexity", direction="lower", margin=0.5)
    first = decide(gate, "1", 9.0, None, None)
    assert first.promoted and first.reason == "no champion yet" and first.champion_version is None
    assert decide(gate, "2", 9.0, "2", 9.0).reason == "already champion"
    assert decide(gate, "3", 9.0, "2", None).promoted  # nothing to compare with: the newest wins
    close = decide(gate, "3", 8.7, "2", 9.0)
    assert not close.promoted and close.reason == "perplexity 8.7 vs 9 (difference -0.3, needs < -0.5)"
    assert decide(gate, "3", 8.0, "2", 9.0).promoted
    assert not decide(gate, "3", math.nan, "2", 9.0).promoted
    assert "| champion (before) | v2 | 9 |" in close.markdown("m")
