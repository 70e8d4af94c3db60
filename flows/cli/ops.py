"""Operating StarFlow: the servers and the deployments.

    starflow serve --cron "0 3 * * 0"   # a scheduled deployment on a Prefect server
"""

from __future__ import annotations

from typing import Annotated

import typer

ops_app = typer.Typer()


@ops_app.command()
def serve(
    cron: Annotated[str, typer.Option(help="cron schedule for retraining runs")] = "0 3 * * 0",
    name: Annotated[str, typer.Option(help="deployment name")] = "scheduled-retrain",
) -> None:
    """Serve the pipeline as a scheduled deployment (needs `prefect server start` and PREFECT_API_URL)."""
    from flows.deployments import serve_pipeline

    serve_pipeline(name=name, cron=cron)
