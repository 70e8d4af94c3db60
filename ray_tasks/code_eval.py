"""HumanEval scoring: completions -> sandboxed programs -> pass@k per problem."""

from __future__ import annotations

from ray_tasks.humaneval import Problem, program, truncate
from ray_tasks.passk import mean_pass_at_k
from ray_tasks.sandbox import run_programs


def score(
    problems: list[Problem], completions: list[list[str]], ks: list[int], timeout_s: float, memory_mb: int
) -> tuple[dict[str, float], list[dict]]:
    """(pass@k metrics, one record per sample) for raw completions (truncated here)."""
    samples = [
        (p, truncate(c)) for p, cs in zip(problems, completions, strict=True) for c in cs
    ]
    results = run_programs([program(p, c) for p, c in samples], timeout_s, memory_mb)
    records = [
        {"task_id": p.task_id, "completion": c, **r} for (p, c), r in zip(samples, results, strict=True)
    ]
    per_problem: dict[str, list[int]] = {}
    for rec in records:
        n_c = per_problem.setdefault(rec["task_id"], [0, 0])
        n_c[0] += 1
        n_c[1] += rec["status"] == "passed"
    metrics = {f"pass@{k}": mean_pass_at_k([tuple(v) for v in per_problem.values()], k) for k in ks}
    return metrics, records
