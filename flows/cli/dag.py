"""The DAG commands: run it, run stages, see what is stale, print params, set up a workspace.

    starflow run [--params FILE] [--force STAGE]   # the whole DAG (stale stages only)
    starflow run --set train.lr=3e-4 [--name NAME] # a DVC experiment; params.yaml untouched
    starflow run --only evaluate                   # only that stage (when stale or forced)
    starflow stage NAME [NAME...]                  # stages, unconditionally, in one process
    starflow ingest [--check] [--notify]           # sources fingerprinted; ingest if one changed; tell Prefect
    starflow status | params | init
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from flows.cli.common import ParamsOpt, fail, load
from flows.stages import STAGE_FLOW_PATHS

SOURCES = "sources"
DAG_STAGES = list(STAGE_FLOW_PATHS)

dag_app = typer.Typer()


@dag_app.command()
def run(
    force: Annotated[Optional[list[str]], typer.Option("--force", "-f", help="run this stage even if DVC says it is up to date (repeatable)")] = None,
    params_path: ParamsOpt = Path("params.yaml"),
    sets: Annotated[Optional[list[str]], typer.Option("--set", "-S", help="change one setting, dotted.key=value (YAML value; repeatable): the run is a DVC experiment")] = None,
    name: Annotated[Optional[str], typer.Option("--name", "-n", help="the experiment's name (default: the Prefect flow run's)")] = None,
    only: Annotated[Optional[list[str]], typer.Option("--only", help="run only this stage, if stale or forced (repeatable)")] = None,
) -> None:
    """Run the whole DAG as one Prefect flow run; only stages DVC finds stale execute.

    With ``--params FILE`` every stage runs with FILE's settings and DVC judges staleness
    and records the lock against them; params.yaml is left as it was. With ``--set`` the run
    is a DVC experiment (``dvc exp show`` lists it): it runs in a worktree of its own, so
    params.yaml, dvc.lock and data/ are left as they were."""
    load(params_path)
    from flows.config import ConfigError
    from flows.experiments import check_can_start, resolve

    try:  # a bad key or value, or a taken name, ends here, before Prefect starts
        if resolve(params_path, {}, sets or []).changed and name:
            check_can_start(name)
    except ConfigError as exc:
        fail(exc)
    from flows.pipeline import pipeline

    summary = pipeline(force=force or [], stages=only or None, params_file=str(params_path), overrides=sets or [],
                       experiment=name)
    typer.echo(json.dumps(summary, indent=2))


@dag_app.command()
def stage(
    names: Annotated[list[str], typer.Argument(help=f"one or more of: {', '.join(DAG_STAGES)}, run in the order given")],
    params_path: ParamsOpt = Path("params.yaml"),
) -> None:
    """Run stages now, unconditionally (dvc.yaml calls this; `dvc repro` decides staleness).

    Several names run in one process, one after another: one start-up instead of one each.
    ``sources`` (the fingerprint check DVC runs every time) runs as a plain call, not a flow run:
    without a server, a flow run would start Prefect's ephemeral API (10-20 s) for a listing."""
    unknown = [n for n in names if n not in DAG_STAGES]
    if unknown:
        fail(f"unknown stage {unknown[0]!r}; expected one of {', '.join(DAG_STAGES)}")
    params = load(params_path)
    from flows.stages import STAGE_FLOWS

    for name in names:
        if name == SOURCES:
            from flows.sources import check_sources

            stats = _source_errors(check_sources, params)
        else:
            stats = STAGE_FLOWS[name](params)
        typer.echo(json.dumps(stats, indent=2, default=str))


@dag_app.command()
def ingest(
    check: Annotated[bool, typer.Option("--check", help="only fingerprint the sources and say whether ingest is stale")] = False,
    notify: Annotated[bool, typer.Option("--notify", help="when a source changed, emit the Prefect event "
                                         "starflow.source.updated (it triggers the pipeline deployment)")] = False,
    params_path: ParamsOpt = Path("params.yaml"),
) -> None:
    """Bring ingest up to date with its sources: fingerprint them and run ingest when one changed.

    It is ``starflow run --only ingest``: one pipeline run, the sources checked first. With
    ``--check`` nothing is ingested: the sources are fingerprinted (``data/sources.json``) and
    the answer is whether ingest is stale. With ``--notify``, when a source changed (ingest ran
    here, or is stale with ``--check``) the event ``starflow.source.updated`` goes to the Prefect
    server: the pipeline deployment (``starflow serve``, infra/prefect.yaml) starts a run on it,
    which finds ingest done or stale and runs what follows. Anything else may emit the same event
    (``prefect event emit starflow.source.updated --resource-id starflow.sources.x``)."""
    if notify and not os.environ.get("PREFECT_API_URL"):
        fail("--notify needs a Prefect server: start `starflow server` in this workspace, or set PREFECT_API_URL")
    params = load(params_path)
    from flows import dvc_dag

    if check:
        from flows.sources import check_sources

        checked = _source_errors(check_sources, params)
        updated = bool(dvc_dag.changes("ingest"))
        report = {"ingest": "stale" if updated else "up to date", **checked}
    else:
        from flows.pipeline import pipeline

        summary = pipeline(stages=["ingest"], params_file=str(params_path))
        checked, updated = summary.get("sources") or {"digest": "", "changed": []}, "ingest" in summary["ran"]
        report = {"ingest": "ran" if updated else "up to date", **checked, "run": summary}
    if notify and updated:
        from flows.sources import notify_source_updated

        event = notify_source_updated(checked, ingested=not check)
        report["event"] = {"event": event.event, "id": str(event.id), "resource": event.resource.id}
    typer.echo(json.dumps(report, indent=2, default=str))


def _source_errors(check, params):
    """The check, with a source it cannot fingerprint (a missing folder, an unreachable remote) as a clear error."""
    try:
        return check(params)
    except ValueError as exc:
        fail(exc)


@dag_app.command()
def status() -> None:
    """Show each stage of dvc.yaml and whether it would run (the sources fingerprinted first)."""
    from flows import dvc_dag

    names = dvc_dag.stage_names()
    table = Table("stage", "state", "why")
    if SOURCES in names:  # ingest is stale when a source changed: the fingerprint says so
        from flows.sources import check_sources

        checked = _source_errors(check_sources, load(Path("params.yaml")))
        table.add_row(SOURCES, "checked", "; ".join(checked["changed"]) or "unchanged since ingest last ran")
    for name in names:
        if name == SOURCES:
            continue
        why = dvc_dag.changes(name)
        table.add_row(name, "stale" if why else "up to date", json.dumps(why, default=str) if why else "")
    Console().print(table)


@dag_app.command()
def params(params_path: ParamsOpt = Path("params.yaml")) -> None:
    """Validate params.yaml and print the resolved tree (defaults filled in)."""
    import yaml

    resolved = load(params_path)
    typer.echo(yaml.safe_dump(resolved.model_dump(mode="json"), sort_keys=False))


@dag_app.command()
def init(
    remote: Annotated[str, typer.Option(help="folder used as the default DVC remote")] = ".dvc_remote",
) -> None:
    """Make the current folder a workspace: git and DVC initialised, a local DVC remote as default."""
    if not Path(".git").exists():
        _sh("git", "init", "-q")
    if not Path(".dvc").exists():
        _sh(sys.executable, "-m", "dvc", "init", "-q")
    current = subprocess.run([sys.executable, "-m", "dvc", "remote", "default"], capture_output=True, text=True)
    if current.returncode != 0:  # "No default remote set"
        Path(remote).mkdir(parents=True, exist_ok=True)
        # --local: the remote's absolute path belongs to this clone, not to git history.
        _sh(sys.executable, "-m", "dvc", "remote", "add", "-d", "-f", "--local", "local", str(Path(remote).resolve()))
    typer.echo("workspace ready")


def _sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True)


