"""`starflow server`: a real Prefect server and MLflow tracking server for a workspace, up and down again.

Both servers answer their health endpoints, other starflow processes started in the workspace find
them through ``.starflow/server/servers.json``, and after `starflow server stop` (from another
process, as a user would from a second shell) no process of either server is left.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from flows.servers import free_port, read_state, running_servers, stop_servers
from tests.paths import ROOT

pytestmark = pytest.mark.slow

STARFLOW = str(Path(sys.executable).parent / "starflow")


@pytest.fixture
def workspace(tmp_path) -> Path:
    (tmp_path / "params.yaml").write_text((ROOT / "params.tiny.yaml").read_text())
    return tmp_path


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI")}
    env.pop("STARFLOW_NO_SERVERS", None)
    return env


def _groups_alive(pids: list[int]) -> list[str]:
    """``ps`` lines of any process still in these process groups (each server leads its own)."""
    out = subprocess.run(["ps", "-e", "-o", "pgid=,pid=,stat=,args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines()
            if line.split()[0] in {str(p) for p in pids} and not line.split()[2].startswith("Z")]


def _healthy(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read()


def test_starflow_server_starts_both_and_stop_leaves_no_process(workspace):
    ports = {"--prefect-port": free_port(), "--mlflow-port": free_port()}
    args = [a for kv in ports.items() for a in (kv[0], str(kv[1]))]
    proc = subprocess.Popen([STARFLOW, "server", *args], cwd=workspace, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        lines = []
        while not any(line.startswith("MLflow UI:") for line in lines):
            line = proc.stdout.readline()
            assert line, f"starflow server ended before printing its URLs:\n{''.join(lines)}"
            lines.append(line)
        out = "".join(lines)
        assert f"http://127.0.0.1:{ports['--prefect-port']}" in out and f"http://127.0.0.1:{ports['--mlflow-port']}" in out
        state = read_state(workspace)
        assert state is not None and {p.name for p in state.processes} == {"prefect", "mlflow"}
        assert json.loads(_healthy(f"{state.prefect_api_url}/health")) is True
        assert _healthy(f"{state.mlflow_url}/health") == b"OK"

        # Another starflow process in the workspace finds them (the CLI reads the state at start-up: flows/cli/__init__.py).
        probe = subprocess.run(
            [sys.executable, "-c", "import os, flows.cli; print(os.environ['PREFECT_API_URL'], os.environ['MLFLOW_TRACKING_URI'])"],
            cwd=workspace, env=_env(), capture_output=True, text=True, check=True)
        assert probe.stdout.split() == [state.prefect_api_url, state.mlflow_url]
        # ... and the MLflow server serves the workspace's own store (params.yaml: mlflow.tracking_uri).
        assert (workspace / "mlflow.db").exists()

        pids = [p.pid for p in state.processes]
        assert _groups_alive(pids)
        status = subprocess.run([STARFLOW, "server", "status"], cwd=workspace, env=_env(), capture_output=True,
                                text=True, check=True)
        assert "prefect:" in status.stdout and "mlflow:" in status.stdout

        t0 = time.monotonic()
        stop = subprocess.run([STARFLOW, "server", "stop"], cwd=workspace, env=_env(), capture_output=True,
                              text=True, timeout=120)
        assert stop.returncode == 0 and "prefect" in stop.stdout and "mlflow" in stop.stdout, stop.stdout + stop.stderr
        assert proc.wait(timeout=60) == 0  # the foreground `starflow server` notices and exits
        print(f"stopped in {time.monotonic() - t0:.1f} s")
        assert _groups_alive(pids) == []
        assert read_state(workspace) is None and not (workspace / ".starflow" / "server" / "servers.json").exists()
        probe = subprocess.run([sys.executable, "-c", "import os, flows.cli; print(os.environ.get('PREFECT_API_URL'))"],
                               cwd=workspace, env=_env(), capture_output=True, text=True, check=True)
        assert probe.stdout.strip() == "None"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_ctrl_c_stops_both(workspace):
    proc = subprocess.Popen([STARFLOW, "server", "--prefect-port", str(free_port()), "--mlflow-port", str(free_port())],
                            cwd=workspace, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("MLflow UI:"):
                break
        pids = [p.pid for p in read_state(workspace).processes]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        assert _groups_alive(pids) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        stop_servers(workspace)  # a failed run must not leave its servers behind


def test_context_manager_and_a_taken_port(workspace):
    from flows.servers import ServerError

    with running_servers(workspace, prefect_port=free_port(), mlflow=False) as servers:
        assert json.loads(_healthy(f"{servers.prefect_api_url}/health")) is True
        pids = [p.pid for p in servers.processes]
        with pytest.raises(ServerError, match="already running"):
            running_servers(workspace).__enter__()
    assert _groups_alive(pids) == []
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        with pytest.raises(ServerError, match=f"port {taken}.*--prefect-port"):
            running_servers(workspace, prefect_port=taken, mlflow=False).__enter__()
