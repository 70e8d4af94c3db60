"""Triggers against a real `prefect server`: a no-change scheduled run ends "nothing new" in seconds,
and a ``starflow.source.updated`` event starts a run of the pipeline deployment.

The workspace's one source is a local bare git repository and its DAG is cut to ``sources`` and
``ingest`` (tests/flows/test_fingerprint.py: ``make_git_workspace``); `starflow serve --cron "* * * * *"`
serves it, ingested once before (`starflow run`): the first scheduled run finds nothing new; then a commit is pushed
upstream, `starflow ingest --check --notify` emits the event, and the event trigger's run ingests it.
"""

from __future__ import annotations

import json
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.flows.test_fingerprint import make_git_workspace, push_commit
from tests.served import api, deployment, server, serving  # noqa: F401  (api, server: the module's fixtures)
from tests.served import cli_env as _env
from tests.workspaces import BIN
from tests.served import wait_for as _wait_for

pytestmark = pytest.mark.slow

NO_CHANGE_RUN_S = 20.0
"""Acceptance: a scheduled run with no source changed ends within this (Prefect's start -> end)."""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> tuple[Path, Path]:
    """Ingested once by the CLI before serving, so that the first scheduled run is already the
    no-change one (waiting for a second cron minute cost the suite a minute; a first run that
    ingests is tests/flows/test_fingerprint_workspace.py's)."""
    root = tmp_path_factory.mktemp("triggers")
    ws, work = make_git_workspace(root, _env(root / "ws"))
    proc = subprocess.run([str(BIN / "starflow"), "run"], cwd=ws, env=_env(ws), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert json.loads((ws / "metrics" / "ingest.json").read_text())["files_kept"] == 1
    return ws, work


@pytest.fixture(scope="module")
def serve_ws(workspace) -> Path:
    return workspace[0]


@pytest.fixture(scope="module")
def served(workspace, server, api):
    ws, _ = workspace
    ready = lambda: _pipeline(api) and _automation(api)  # noqa: E731  (made right after the deployment)
    with serving(ws, {**_env(ws), **server.env()}, ready, 240) as proc:
        yield proc


def _pipeline(api):
    return deployment(api, "pipeline")


def _automation(api):
    return next((a for a in api.read_automations() if a.name == "source updated"), None)


def _runs(api, deployment):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    return api.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
                              sort=FlowRunSort.EXPECTED_START_TIME_ASC)


def _failed(runs) -> None:
    for run in runs:
        assert run.state.type.value not in ("FAILED", "CRASHED"), f"{run.name}: {run.state}"


def test_a_no_change_scheduled_run_ends_nothing_new_in_seconds(workspace, api, served):
    ws, _ = workspace
    pipeline = _pipeline(api)
    automation = _automation(api)  # the pipeline deployment's event trigger, owned by the deployment
    assert automation.trigger.expect == {"starflow.source.updated"} and automation.enabled
    assert [a.deployment_id for a in automation.actions] == [pipeline.id]

    def first_completed_scheduled():
        runs = [r for r in _runs(api, pipeline) if r.auto_scheduled]
        _failed(runs)
        return next((r for r in runs if r.state.is_completed()), None)

    second = _wait_for(first_completed_scheduled, 600, served, ws)
    assert second.state.message == "nothing new"
    run_s = (second.end_time - second.start_time).total_seconds()
    from_due_s = (second.end_time - second.expected_start_time).total_seconds()
    print(f"no-change scheduled run {second.name}: {run_s:.1f} s from start to end "
          f"({from_due_s:.1f} s from its scheduled time, serve's pick-up and process start included)")
    assert run_s < NO_CHANGE_RUN_S


def test_source_updated_event_starts_a_pipeline_run(workspace, server, api, served):
    ws, work = workspace
    pipeline = _pipeline(api)
    [schedule] = pipeline.schedules
    api.update_deployment_schedule(pipeline.id, schedule.id, active=False)  # only the event starts runs now

    def scheduled_settled():
        runs = _runs(api, pipeline)
        for run in runs:
            if run.state.is_scheduled():
                api.delete_flow_run(run.id)
        return all(r.state.is_final() for r in runs if not r.state.is_scheduled()) or None

    _wait_for(scheduled_settled, 300, served, ws)
    before = {r.id for r in _runs(api, pipeline)}

    commit = push_commit(work, "lib.py", "VALUE = 2\n")
    proc = subprocess.run([str(BIN / "starflow"), "ingest", "--check", "--notify"], cwd=ws,
                          env={**_env(ws), **server.env()}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    report = json.loads(re.findall(r"(?ms)^\{\n.*?^\}$", proc.stdout)[-1])
    assert report["ingest"] == "stale" and report["event"]["event"] == "starflow.source.updated"
    assert any(commit[:10] in line for line in report["changed"])
    emitted = datetime.now(timezone.utc)

    def triggered_run_done():
        new = [r for r in _runs(api, pipeline) if r.id not in before]
        _failed(new)
        return next((r for r in new if r.state.is_completed()), None)

    run = _wait_for(triggered_run_done, 300, served, ws)
    assert not run.auto_scheduled and run.state.message == "ran ingest"
    assert run.created_by is not None and run.created_by.type == "AUTOMATION"
    print(f"triggered run {run.name} created {(run.created - emitted).total_seconds():+.1f} s after the event, "
          f"ran {(run.end_time - run.start_time).total_seconds():.1f} s")
    assert json.loads((ws / "metrics" / "ingest.json").read_text())["files_kept"] == 2

    # Without a server to hear it, --notify is refused up front.
    env = {k: v for k, v in _env(ws).items() if k != "PREFECT_API_URL"}
    refused = subprocess.run([str(BIN / "starflow"), "ingest", "--check", "--notify"], cwd=ws, env=env,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "needs a Prefect server" in refused.stdout + refused.stderr
