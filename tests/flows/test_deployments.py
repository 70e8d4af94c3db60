"""`starflow serve` against a real `prefect server` (its scheduler on): forms, schedule, slug, one run at a time.

The session's ``prefect_test_harness`` is an ephemeral API whose scheduler never runs, so these
tests start their own server (``flows.servers``, scheduler loop 1 s) and point every client and
subprocess at it explicitly. The workspace is the tiny configuration (``params.tiny.yaml``); the
run the one-minute cron fires is the whole tiny DAG, through the served pipeline deployment.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from prefect.schedules import Cron
from prefect.states import Scheduled

from flows.config import load_params
from flows.deployments import RUN_SECTIONS
from tests.paths import ROOT
from tests.served import api, server, serving  # noqa: F401  (api, server: the module's fixtures)
from tests.served import cli_env as _env
from tests.served import deployment as _deployment
from tests.served import wait_for as _wait_for
from tests.workspaces import make_workspace

pytestmark = pytest.mark.slow

STAGES = ["ingest", "dedup", "curate", "attribution", "tokenize", "train", "evaluate"]
SLUG = "retrain"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("serve-ws")
    return make_workspace(ws, ROOT / "params.tiny.yaml", _env(ws))


@pytest.fixture(scope="module")
def serve_ws(workspace) -> Path:
    return workspace


@pytest.fixture(scope="module")
def served(workspace, server, api):
    """`starflow serve --cron "* * * * *"` in the workspace, until the module's tests are done."""
    ready = lambda: _deployment(api, "pipeline") and _deployment(api, "evaluate")  # noqa: E731
    with serving(workspace, {**_env(workspace), **server.env()}, ready, 180) as proc:
        yield proc


def _ui_validate(server, schema: dict, values: dict) -> dict:
    import httpx

    resp = httpx.post(f"{server.prefect_api_url}/ui/schemas/validate", json={"schema": schema, "values": values})
    resp.raise_for_status()
    return resp.json()


def _runs(api, deployment):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    return api.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))


def test_forms_carry_todays_values(workspace, server, api, served):
    # The sections a run takes (not ``serve``: the deployments' own schedule).
    today = {k: v for k, v in load_params(workspace / "params.yaml").model_dump(mode="json").items() if k in RUN_SECTIONS}
    pipeline = _deployment(api, "pipeline")
    form = pipeline.parameter_openapi_schema["properties"]
    assert list(form) == [*today, "overrides", "force", "stages", "experiment"]
    for section, values in today.items():
        # Each section is its model, prefilled (no None toggle), so one field is edited in place.
        assert form[section]["default"] == values and "$ref" in form[section] and "anyOf" not in form[section]
    assert form["train"]["default"]["lr"] == 0.003  # params.tiny.yaml's, not TrainParams' own default
    assert pipeline.parameters == {}  # "Quick run" passes nothing: params.yaml as it is at run time

    # The UI's "Custom run" checks the form with the server before it submits: today's values with
    # one field edited pass, a wrong type is reported at that field.
    schema = pipeline.parameter_openapi_schema
    edited = {**today, "train": {**today["train"], "lr": 0.001}}
    assert _ui_validate(server, schema, edited) == {"valid": True, "errors": []}
    bad = _ui_validate(server, schema, {**today, "train": {**today["train"], "lr": "fast"}})
    assert bad["valid"] is False and "lr" in json.dumps(bad["errors"])

    train = _deployment(api, "train")
    assert list(train.parameter_openapi_schema["properties"]) == ["train", "overrides", "force", "experiment"]
    assert train.parameters == {"stages": ["train"]}
    assert train.entrypoint == "flows.pipeline.pipeline"
    # A custom run that sets one field keeps the deployment's fixed parameters (the server merges them).
    later = Scheduled(scheduled_time=datetime.now(timezone.utc) + timedelta(hours=1))  # never executed here
    run = api.create_flow_run_from_deployment(train.id, parameters={"overrides": ["train.lr=0.001"]}, state=later)
    assert run.parameters == {"stages": ["train"], "overrides": ["train.lr=0.001"]}
    api.delete_flow_run(run.id)


def test_one_minute_cron_fires_and_completes(workspace, api, served):
    pipeline = _deployment(api, "pipeline")
    [schedule] = pipeline.schedules
    assert (schedule.slug, schedule.active, schedule.schedule.cron) == (SLUG, True, "* * * * *")
    t0 = time.monotonic()

    def completed_scheduled_run():
        runs = [r for r in _runs(api, pipeline) if r.auto_scheduled]
        for run in runs:
            assert run.state.type.value not in ("FAILED", "CRASHED"), f"{run.name}: {run.state}"
        return next((r for r in runs if r.state.is_completed()), None)

    run = _wait_for(completed_scheduled_run, 600, served, workspace)
    print(f"cron run {run.name} completed {time.monotonic() - t0:.0f} s after serve was up "
          f"(ran {run.total_run_time})")
    summary = json.loads((workspace / ".starflow" / "last_run.json").read_text())
    assert summary["ran"] == STAGES
    children = api.read_flow_runs()
    stage_children = {r.name for r in children if r.parent_task_run_id and r.state.is_completed()}
    assert len(stage_children) >= len(STAGES)


def test_runs_are_queued_one_at_a_time(workspace, api, served):
    # The workspace is up to date now (the cron run above), so each run checks DVC and completes.
    pipeline, ingest = _deployment(api, "pipeline"), _deployment(api, "ingest")
    asked = [api.create_flow_run_from_deployment(d.id) for d in (pipeline, ingest)]

    def all_done():
        runs = [api.read_flow_run(r.id) for r in asked]
        return runs if all(r.state.is_final() for r in runs) else None

    runs = _wait_for(all_done, 400, served, workspace)
    assert all(r.state.is_completed() for r in runs), [str(r.state) for r in runs]
    every = [r for d in (pipeline, ingest) for r in _runs(api, d) if r.start_time and r.end_time]  # cron's too
    spans = sorted((r.start_time, r.end_time) for r in every)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end, f"runs overlapped: {spans}"


def test_redeploy_keeps_a_paused_schedule_paused(workspace, api, served):
    from flows.deployments import ServeParams, workspace_deployments

    pipeline = _deployment(api, "pipeline")
    [schedule] = pipeline.schedules
    api.update_deployment_schedule(pipeline.id, schedule.id, active=False)  # the UI's pause toggle
    params = load_params(workspace / "params.yaml")
    for deployment in workspace_deployments(params, ServeParams(cron="*/5 * * * *", slug=SLUG)):
        deployment.apply()  # what `starflow serve` does on every start
    [after] = _deployment(api, "pipeline").schedules
    assert (after.id, after.slug, after.active, after.schedule.cron) == (schedule.id, SLUG, False, "*/5 * * * *")

    # What the state look-up guards against: Prefect's own redeploy sends active=True and re-enables it.
    from flows.pipeline import pipeline as flow

    probe = flow.to_deployment("slug-probe", schedules=[Cron("*/5 * * * *", slug=SLUG)])
    probe_id = probe.apply()
    api.update_deployment_schedule(probe_id, _deployment(api, "slug-probe").schedules[0].id, active=False)
    probe.apply()
    assert _deployment(api, "slug-probe").schedules[0].active is True
    api.delete_deployment(probe_id)


def test_forms_follow_params_yaml_while_serving(workspace, api, served):
    path = workspace / "params.yaml"
    before = path.read_text()
    edited = yaml.safe_load(before)
    edited["train"]["lr"] = 0.0007
    path.write_text(yaml.safe_dump(edited, sort_keys=False))
    try:
        def shows_new_lr():
            forms = [_deployment(api, name).parameter_openapi_schema["properties"]["train"]["default"]["lr"]
                     for name in ("pipeline", "train")]
            return forms == [0.0007, 0.0007]

        _wait_for(shows_new_lr, 60, served, workspace)
    finally:
        path.write_text(before)
