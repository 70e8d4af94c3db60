"""The unbiased pass@k estimator of the Codex paper (Chen et al. 2021, https://arxiv.org/abs/2107.03374),
as ``human_eval/evaluation.py`` of https://github.com/openai/human-eval computes it."""

from __future__ import annotations

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """1 - C(n-c, k) / C(n, k), computed stably; 1.0 when fewer than k samples fail."""
    if k > n:
        raise ValueError(f"k={k} exceeds the number of samples n={n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(per_problem: list[tuple[int, int]], k: int) -> float:
    """Mean pass@k over problems given (n, c) per problem."""
    if not per_problem:
        raise ValueError("no problems to score")
    return float(np.mean([pass_at_k(n, c, k) for n, c in per_problem]))


def pass_at_k_table(counts: dict[str, list[int] | tuple[int, int]], ks: list[int]) -> dict[str, float]:
    """``{"pass@k": mean}`` for each k every problem has enough samples for.

    Like ``human-eval``, a k larger than some problem's sample count is left out rather
    than estimated from too few samples."""
    per_problem = [tuple(v) for v in counts.values()]
    return {f"pass@{k}": mean_pass_at_k(per_problem, k) for k in ks if per_problem and all(n >= k for n, _ in per_problem)}
