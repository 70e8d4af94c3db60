"""The DAG commands: run it, run stages, see what is stale, print params, set up a workspace.

    starflow run [--params FILE] [--force STAGE]   # the whole DAG (stale stages only)
    starflow run --set train.lr=3e-4 [--name NAME] # a DVC experiment; params.yaml untouched
    starflow run --only evaluate                   # only that stage (when stale or forced)
    starflow stage NAME [NAME...]                  # stages, unconditionally, in one process
    starflow status | params | init
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from flows.cli.common import ParamsOpt, fail, load
from flows.config import STAGES

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
    names: Annotated[list[str], typer.Argument(help=f"one or more of: {', '.join(STAGES)}, run in the order given")],
    params_path: ParamsOpt = Path("params.yaml"),
) -> None:
    """Run stages now, unconditionally (dvc.yaml calls this; `dvc repro` decides staleness).

    Several names run in one process, one after another: one start-up instead of one each."""
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        fail(f"unknown stage {unknown[0]!r}; expected one of {', '.join(STAGES)}")
    params = load(params_path)
    from flows.stages import STAGE_FLOWS

    for name in names:
        stats = STAGE_FLOWS[name](params)
        typer.echo(json.dumps(stats, indent=2, default=str))


@dag_app.command()
def status() -> None:
    """Show each stage of dvc.yaml and whether it would run."""
    from flows import dvc_dag

    table = Table("stage", "state", "why")
    for name in dvc_dag.stage_names():
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


