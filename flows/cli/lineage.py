"""Where a model came from, and how two runs differ (the queries are ``flows/lineage.py``).

    starflow lineage models:/starflow-coder@champion [--json]   # or models:/starflow-coder/3, 3, a run id
    starflow compare A B [--all] [--json]      # A, B: run ids, model versions, run or experiment names

``lineage`` prints the git commit, the params that differ from the defaults (``--json``: all of
them), the DVC md5 of every stage output the model was built from, the Prefect flow run, the
MLflow run of each stage, the training data's figures (the tokenize run's metrics) and the
commands that restore that data. ``compare`` prints the params that differ (``--all``: every
one) and every metric side by side; a model version compares as the pipeline run that
evaluated it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from flows.cli.common import OptionalParamsOpt, fail, load

lineage_app = typer.Typer()
out = Console(highlight=False, soft_wrap=True)


def _client(params_path: Path):
    """The workspace's MLflow store (``MLFLOW_TRACKING_URI`` overrides params), read-only use."""
    import os

    import mlflow

    params = load(params_path, missing_ok=True)
    from flows.tracking import absolute_store_uri

    mlflow.set_tracking_uri(absolute_store_uri(os.environ.get("MLFLOW_TRACKING_URI") or params.mlflow.tracking_uri))
    return mlflow.MlflowClient(), params


def _resolve(client, ref: str, params):
    from flows.lineage import LineageError, resolve

    try:
        return resolve(client, ref, params.mlflow.registered_model, params.mlflow.experiment)
    except LineageError as exc:
        fail(exc)


@lineage_app.command("lineage")
def lineage_command(
    model: Annotated[str, typer.Argument(help="models:/NAME@ALIAS, models:/NAME/VERSION, a version number or a run id")],
    as_json: Annotated[bool, typer.Option("--json", help="print the lineage as one JSON object")] = False,
    params_path: OptionalParamsOpt = Path("params.yaml"),
) -> None:
    """Which commit, params, data versions, Prefect run and MLflow runs a model was built from."""
    from flows.config import Params
    from flows.lineage import lineage
    from flows.tracking import flatten

    client, params = _client(params_path)
    found = lineage(client, _resolve(client, model, params)).to_dict(params.mlflow.ui_url)
    if as_json:
        typer.echo(json.dumps(found, indent=2, default=str))
        return
    defaults = {k: str(v) for k, v in flatten(Params()).items()}
    out.print(lineage_text(found, changed_params_of(found["params"], defaults)))


def changed_params_of(params: dict[str, str], defaults: dict[str, str]) -> dict[str, str]:
    """The logged params whose value is not the default (what set this model apart)."""
    return {k: v for k, v in sorted(params.items()) if defaults.get(k) != v}


def lineage_text(found: dict[str, Any], changed: dict[str, str]) -> str:
    """The lineage as the terminal shows it: one block per question a user asks."""
    model = found["model"]
    title = f"models:/{model['name']}/{model['version']}" if model else f"run {found['run_id']}"
    prefect = found["prefect_flow_run"]
    lines = [f"[bold]{title}[/bold]  (MLflow run {found['run_id']})",
             f"git commit: {found['git_commit'] or '(none recorded)'}"
             + (f"  (DVC experiment {found['experiment']})" if found.get("experiment") else ""),
             f"Prefect flow run: {prefect['id'] or '(none)'}"
             + (f" ({prefect['name']})" if prefect["name"] else "")
             + (f"  {prefect['url']}" if prefect["url"] else ""),
             "", "[bold]data versions (DVC md5, from dvc.lock)[/bold]"]
    lines += [f"  {path:<20} {md5}" for path, md5 in found["data"].items()] or ["  (no datasets recorded)"]
    lines += ["", "[bold]MLflow runs[/bold]"]
    lines += [f"  {stage:<12} {r['run_id']}  commit {(r['commit'] or '?')[:12]}  {r['url']}"
              for stage, r in found["mlflow_runs"].items()]
    lines += ["", f"[bold]params[/bold] ({len(changed)} differ from the defaults of {len(found['params'])}; "
              "--json lists all)"]
    lines += [f"  {k} = {v}" for k, v in changed.items()]
    if training := found.get("training"):
        lines += ["", "[bold]trained from[/bold]", f"  {training.get('init_from', 'scratch')}"
                  + (f"  (fell back: {training['init_fallback']})" if training.get("init_fallback") else "")]
        lines += [f"  data version (tokenize shards) {training['data_version']}"] if training.get("data_version") else []
        parent = training.get("parent") or {}
        if parent:
            lines += [f"  parent models:/{parent.get('model')}/{parent.get('version')}"
                      + (f"@{parent['alias']}" if parent.get("alias") else "")
                      + f"  run {parent.get('run_id')}  train run {parent.get('train_run_id')}",
                      f"  parent's data version {parent.get('data_version')}"]
    if found.get("sources"):
        lines += ["", "[bold]sources (the fingerprint ingest consumed)[/bold]"]
        lines += [f"  {s['source']}: " + _source_state(s) for s in found["sources"]]
    if found["training_data"]:
        lines += ["", "[bold]training data (tokenize run)[/bold]"]
        lines += [f"  {k} = {_fmt(v)}" for k, v in found["training_data"].items()]
    lines += ["", "[bold]restore this data[/bold]"] + [f"  {step}" for step in found["restore"]]
    return "\n".join(lines)


@lineage_app.command("compare")
def compare_command(
    a: Annotated[str, typer.Argument(help="run id, model version (models:/NAME/N, @ALIAS, N), run or experiment name")],
    b: Annotated[str, typer.Argument(help="the other run")],
    show_all: Annotated[bool, typer.Option("--all", help="also the params both runs share")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the comparison as one JSON object")] = False,
    params_path: OptionalParamsOpt = Path("params.yaml"),
) -> None:
    """Params that differ and metrics side by side, for two runs."""
    from flows.config import Params
    from flows.lineage import compare
    from flows.tracking import flatten

    client, params = _client(params_path)
    result = compare(client, _resolve(client, a, params), _resolve(client, b, params), flatten(Params()), show_all)
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    for table in compare_tables(result, show_all):
        out.print(table)


def compare_tables(result: dict[str, Any], show_all: bool = False) -> list[Table]:
    def header(side: dict[str, str]) -> str:
        extra = f" [{side['experiment']}]" if side["experiment"] else ""
        return f"{side['name']}{extra}\n{side['run_id'][:12]} @ {side['commit'][:8] or '?'}"

    params = Table(title="params" + ("" if show_all else " that differ"), show_lines=False)
    metrics = Table(title="metrics")
    for table in (params, metrics):
        table.add_column("name", style="bold")
        table.add_column(header(result["a"]))
        table.add_column(header(result["b"]))
    for row in result["params"]:
        params.add_row(row["name"], row["a"], row["b"])
    if not result["params"]:
        params.add_row("(none differ)", "", "")
    for row in result["metrics"]:
        metrics.add_row(row["name"], _fmt(row["a"]), _fmt(row["b"]))
    return [params, metrics]


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _source_state(source: dict[str, Any]) -> str:
    if "heads" in source:
        return ", ".join(f"{url} @ {head[:12]}" for url, head in source["heads"].items())
    if "distributions" in source:
        return f"{len(source['distributions'])} distributions"
    return f"{source['files']} files, {source['bytes']} bytes"
