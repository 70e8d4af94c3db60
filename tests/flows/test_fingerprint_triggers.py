"""Triggers against a real `prefect server`: a no-change scheduled run ends "nothing new" in seconds,
and a ``starflow.source.updated`` event starts a run of the pipeline deployment.

The workspace's one source is a local bare git repository and its DAG is cut to ``sources`` and
``ingest`` (tests/flows/test_fingerprint.py: ``make_git_workspace``); `starflow serve --cron "* * * * *"`
serves it. The first scheduled run ingests, the next finds nothing new; then a commit is pushed
upstream, `starflow ingest --check --notify` emits the event, and the event trigger's run ingests it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from flows.servers import free_port, running_servers
from tests.flows.test_fingerprint import make_git_workspace, push_commit
from tests.flows.test_fingerprint_workspace import BIN, _env

pytestmark = pytest.mark.slow

NO_CHANGE_RUN_S = 20.0
"""Acceptance: a scheduled run with no source changed ends within this (Prefect's start -> end)."""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("triggers")
    return make_git_workspace(root, _env(root / "ws"))


@pytest.fixture(scope="module")
def server(workspace):
    ws, _ = workspace
    with running_servers(ws, prefect_port=free_port(), mlflow=False,
                         server_env={"PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "1"}) as servers:
        yield servers


@pytest.fixture(scope="module")
def api(server):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: server.prefect_api_url}), get_client(sync_client=True) as client:
        yield client


@pytest.fixture(scope="module")
def served(workspace, server, api):
    ws, _ = workspace
    env = {**_env(ws), **server.env(), "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    log = (ws / "serve.log").open("w")
    proc = subprocess.Popen([str(BIN / "starflow"), "serve", "--cron", "* * * * *"], cwd=ws, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for(lambda: _pipeline(api) and _automation(api), 240, proc, ws)  # made right after the deployment
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _pipeline(api):
    from prefect.exceptions import ObjectNotFound

    try:
        return api.read_deployment_by_name("starflow-pipeline/pipeline")
    except ObjectNotFound:
        return None


def _automation(api):
    return next((a for a in api.read_automations() if a.name == "source updated"), None)


def _runs(api, deployment):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    return api.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
                              sort=FlowRunSort.EXPECTED_START_TIME_ASC)


def _wait_for(check, timeout_s: float, proc, ws: Path):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"starflow serve exited:\n{(ws / 'serve.log').read_text()[-4000:]}"
        if found := check():
            return found
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout_s} s; serve log:\n{(ws / 'serve.log').read_text()[-4000:]}")


def _failed(runs) -> None:
    for run in runs:
        assert run.state.type.value not in ("FAILED", "CRASHED"), f"{run.name}: {run.state}"


def test_a_no_change_scheduled_run_ends_nothing_new_in_seconds(workspace, api, served):
    ws, _ = workspace
    pipeline = _pipeline(api)
    automation = _automation(api)  # the pipeline deployment's event trigger, owned by the deployment
    assert automation.trigger.expect == {"starflow.source.updated"} and automation.enabled
    assert [a.deployment_id for a in automation.actions] == [pipeline.id]

    def two_completed_scheduled():
        runs = [r for r in _runs(api, pipeline) if r.auto_scheduled]
        _failed(runs)
        done = [r for r in runs if r.state.is_completed()]
        return done[:2] if len(done) >= 2 else None

    first, second = _wait_for(two_completed_scheduled, 600, served, ws)
    assert first.state.message == "ran ingest"
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
