"""`starflow serve` against a real `prefect server`, for the tests that need a scheduler and triggers.

The session's ``prefect_test_harness`` is an ephemeral API whose scheduler never runs, so these
tests start their own server (``flows.servers``, scheduler loop 1 s), point a client at it and run
`starflow serve` in the workspace as a user does (tests/flows/test_deployments.py,
tests/flows/test_fingerprint_triggers.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from flows.servers import free_port, running_servers
from tests.workspaces import BIN


def cli_env(ws: Path) -> dict[str, str]:
    """The environment of a `starflow` command in ``ws``: the venv first on PATH, Prefect's home in the
    workspace, and none of the suite's own API / tracking settings (the test's server is given)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "STARFLOW_MLFLOW_PARENT_RUN_ID")}
    env["PATH"] = f"{BIN}:{env['PATH']}"
    env["PREFECT_HOME"] = str(ws / ".prefect-home")
    return env


@pytest.fixture(scope="module")
def server(serve_ws: Path):
    """The module's Prefect server with its scheduler on (the module defines ``serve_ws``)."""
    with scheduler_server(serve_ws) as servers:
        yield servers


@pytest.fixture(scope="module")
def api(server):
    """A client on the module's server."""
    with api_client(server) as client:
        yield client


@contextlib.contextmanager
def scheduler_server(ws: Path) -> Iterator:
    """A Prefect server (no MLflow) for ``ws`` whose scheduler looks for due runs every second."""
    with running_servers(ws, prefect_port=free_port(), mlflow=False,
                         server_env={"PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "1"}) as servers:
        yield servers


@contextlib.contextmanager
def api_client(server) -> Iterator:
    """A sync Prefect client on ``server`` (overriding the harness's PREFECT_API_URL)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: server.prefect_api_url}), get_client(sync_client=True) as client:
        yield client


@contextlib.contextmanager
def serving(ws: Path, env: dict[str, str], ready: Callable[[], object], timeout_s: float) -> Iterator[subprocess.Popen]:
    """`starflow serve --cron "* * * * *"` in ``ws`` (its log in ``ws/serve.log``) until ``ready()`` is
    true; stopped with Ctrl-C (SIGINT to its process group) when the block ends, killed after 30 s."""
    log = (ws / "serve.log").open("w")
    proc = subprocess.Popen([str(BIN / "starflow"), "serve", "--cron", "* * * * *"], cwd=ws,
                            env={**env, "PREFECT_RUNNER_POLL_FREQUENCY": "1"},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(ready, timeout_s, proc, ws)
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


def wait_for(check: Callable[[], object], timeout_s: float, proc: subprocess.Popen, ws: Path):
    """``check()``'s first true value, polled every second while `starflow serve` is alive."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"starflow serve exited:\n{(ws / 'serve.log').read_text()[-4000:]}"
        if found := check():
            return found
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout_s} s; serve log:\n{(ws / 'serve.log').read_text()[-4000:]}")


def deployment(api, name: str):
    """The served deployment ``starflow-pipeline/NAME``, or None while it does not exist."""
    from prefect.exceptions import ObjectNotFound

    try:
        return api.read_deployment_by_name(f"starflow-pipeline/{name}")
    except ObjectNotFound:
        return None
