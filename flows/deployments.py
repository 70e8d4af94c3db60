"""Deployments: the pipeline on a schedule, startable from the Prefect UI.

Schedules need a real Prefect server (the ephemeral API never fires them):

    prefect server start --host 127.0.0.1 --port 4200 &
    export PREFECT_API_URL=http://127.0.0.1:4200/api
    starflow serve --cron "0 3 * * 0"       # weekly retrain; "Quick run" in the UI starts one now

Each run executes in a subprocess in this workspace, so it reads params.yaml and
dvc.lock here and skips what DVC finds up to date.
"""

from __future__ import annotations

from prefect import serve

from flows.pipeline import pipeline


def pipeline_deployment(name: str, cron: str | None):
    return pipeline.to_deployment(
        name=name,
        cron=cron,
        tags=["starflow"],
        description="Curate -> tokenize -> train -> evaluate; stale stages only (DVC decides).",
    )


def serve_pipeline(name: str = "scheduled-retrain", cron: str | None = "0 3 * * 0") -> None:
    serve(pipeline_deployment(name, cron))


if __name__ == "__main__":
    serve_pipeline()
