"""Operating StarFlow: the local servers and the deployments.

    starflow server                      # Prefect (:4200) + MLflow (:5000) for this workspace; Ctrl-C stops both
    starflow server stop                 # from another shell
    starflow server status
    starflow serve                       # the pipeline and one deployment per stage, schedule from params.yaml
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import ParamsOpt, fail

ops_app = typer.Typer()


class ServerAction(str, Enum):
    start = "start"
    stop = "stop"
    status = "status"


@ops_app.command()
def server(
    action: Annotated[ServerAction, typer.Argument(help="start (default, in the foreground), stop or status")]
    = ServerAction.start,
    prefect_port: Annotated[int, typer.Option(help="port of the Prefect server and UI")] = 4200,
    mlflow_port: Annotated[int, typer.Option(help="port of the MLflow tracking server and UI")] = 5000,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """A Prefect server and an MLflow tracking server for this workspace (SQLite stores, local artifacts).

    Other starflow commands run from this folder use them while they are up (PREFECT_API_URL and
    MLFLOW_TRACKING_URI are set from .starflow/server/servers.json unless already set)."""
    from flows import servers as srv

    if action is ServerAction.stop:
        stopped = srv.stop_servers(".")
        typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "no servers of this workspace are running")
        return
    if action is ServerAction.status:
        state = srv.read_state(".")
        if state is None:
            typer.echo("not running")
            raise typer.Exit(1)
        for proc in state.alive():
            typer.echo(f"{proc.name}: {proc.url} (pid {proc.pid}, log {proc.log})")
        return
    typer.echo("starting the Prefect and MLflow servers (SQLite stores under .starflow/server/ and the workspace)...")
    try:
        running = srv.start_servers(".", prefect_port=prefect_port, mlflow_port=mlflow_port, params_file=params)
    except (srv.ServerError, ValueError) as exc:  # ValueError: ConfigError from params.yaml
        fail(exc)
    try:
        typer.echo(f"Prefect UI:  {running.prefect_url}\nPrefect API: {running.prefect_api_url}\n"
                   f"MLflow UI:   {running.mlflow_url}\n"
                   "starflow commands in this folder now use them; Ctrl-C (or `starflow server stop`) stops both.")
        srv.wait_until_stopped(running)
    except KeyboardInterrupt:  # Ctrl-C before the wait's own handler was in place (seen in CI under load)
        srv.stop_servers(running)
    typer.echo("servers stopped")


@ops_app.command()
def serve(
    params: ParamsOpt = Path("params.yaml"),
    cron: Annotated[str | None, typer.Option(help="retraining cron for this serve (default: params.yaml serve.cron)")]
    = None,
) -> None:
    """Serve the pipeline and one deployment per stage from this process until Ctrl-C (needs a Prefect
    server: `starflow server`). Forms show params.yaml's values; the schedule is params.yaml's `serve`."""
    from flows.config import ConfigError
    from flows.deployments import serve_workspace

    try:
        serve_workspace(params_file=params, cron=cron)
    except ConfigError as exc:
        fail(exc)
