"""A local Prefect server and MLflow tracking server for a workspace: start, find, stop.

    starflow server                      # both up (Prefect UI :4200, MLflow UI :5000), Ctrl-C stops both
    starflow server stop                 # from another shell: stops the ones this workspace started
    starflow server status               # URLs and pids, or "not running"

From Python (a test, a notebook) the same servers as a context manager:

    from flows.servers import running_servers, free_port

    with running_servers(workspace, prefect_port=free_port(), mlflow_port=free_port()) as servers:
        servers.prefect_api_url           # "http://127.0.0.1:PORT/api"  (PREFECT_API_URL)
        servers.mlflow_url                # "http://127.0.0.1:PORT"      (MLFLOW_TRACKING_URI)
        subprocess.run([...], env={**os.environ, **servers.env()})
    # both stopped here: their process groups are gone (SIGTERM, then SIGKILL after a grace period)

``start_servers``/``stop_servers`` are the same in two calls; ``mlflow=False`` starts Prefect only,
``server_env={...}`` adds settings to the Prefect server's environment (a test's
``PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS=1``).

What they store (all under the workspace's ``.starflow/server/``, which git ignores):

- Prefect: ``prefect server start`` with its own ``PREFECT_HOME`` and the SQLite database
  ``prefect.db``, so deployments and run history survive a restart and never mix with
  ``~/.prefect``. Health: ``GET /api/health``.
- MLflow: ``mlflow server`` on the workspace's own store, ``params.yaml: mlflow.tracking_uri``
  (``sqlite:///mlflow.db``; a relative path is resolved in the workspace) with artifacts served
  from ``mlflow.artifact_location`` (``mlartifacts/``): the runs ``starflow run`` logged before are
  the ones the UI shows. Health: ``GET /health``.
- ``servers.json``: their pids (each a process-group leader), ports and URLs.

How other commands find them: ``flows/cli/__init__.py`` calls ``export_server_env()`` when any
``starflow`` command starts (what it starts inherits the settings: `dvc repro`'s stages, served
runs). If ``.starflow/server/servers.json`` in the
current folder names live processes, it sets ``PREFECT_API_URL`` and ``MLFLOW_TRACKING_URI``
to them, each only when the user has not set it already; ``STARFLOW_NO_SERVERS=1`` turns the
look-up off (a test suite that must not talk to a developer's servers). Without the file
nothing changes: Prefect's ephemeral API and the SQLite MLflow store, as before.

This module imports only the standard library at the top, so the start-up look-up costs a
file read and never loads Prefect before ``flows`` has set its environment defaults.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

STATE_DIR = Path(".starflow") / "server"
"""Where the servers keep their databases, logs and ``servers.json`` (relative to the workspace)."""
STATE_FILE = "servers.json"
OPT_OUT_ENV = "STARFLOW_NO_SERVERS"
"""Set to 1 to keep ``export_server_env`` from pointing this process at a running workspace's servers."""
HOST = "127.0.0.1"
STOP_GRACE_S = 15.0
"""How long a server gets to exit after SIGTERM before its process group is killed."""


class ServerError(RuntimeError):
    """A server could not start (port taken, died, no health answer) or the workspace's state is wrong."""


@dataclass
class ServerProcess:
    """One server process, the leader of its own process group (so stopping it stops its workers)."""

    name: str
    pid: int
    url: str
    health: str
    log: str


@dataclass
class Servers:
    """The servers of one workspace, as started (or as ``servers.json`` records them)."""

    workspace: str
    processes: list[ServerProcess] = field(default_factory=list)

    def _url(self, name: str) -> str | None:
        return next((p.url for p in self.processes if p.name == name), None)

    @property
    def prefect_url(self) -> str | None:
        """The Prefect UI, e.g. http://127.0.0.1:4200."""
        return self._url("prefect")

    @property
    def prefect_api_url(self) -> str | None:
        """What ``PREFECT_API_URL`` must be for clients of this server."""
        return f"{self.prefect_url}/api" if self.prefect_url else None

    @property
    def mlflow_url(self) -> str | None:
        """The MLflow tracking server and UI, what ``MLFLOW_TRACKING_URI`` must be."""
        return self._url("mlflow")

    def env(self) -> dict[str, str]:
        """The environment a client process needs to use these servers."""
        env = {}
        if self.prefect_api_url:
            env["PREFECT_API_URL"] = self.prefect_api_url
        if self.mlflow_url:
            env["MLFLOW_TRACKING_URI"] = self.mlflow_url
        return env

    def alive(self) -> list[ServerProcess]:
        return [p for p in self.processes if _group_alive(p.pid)]


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it), for tests and second workspaces."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def state_dir(workspace: str | Path = ".") -> Path:
    return Path(workspace).resolve() / STATE_DIR


def read_state(workspace: str | Path = ".") -> Servers | None:
    """The workspace's servers if ``servers.json`` names at least one live process, else None."""
    path = state_dir(workspace) / STATE_FILE
    try:
        raw = json.loads(path.read_text())
        servers = Servers(raw["workspace"], [ServerProcess(**p) for p in raw["processes"]])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return servers if servers.alive() else None


def export_server_env(workspace: str | Path = ".") -> None:
    """Point this process (and the ones it starts) at the workspace's running servers, if any.

    Called from ``flows/cli/__init__.py`` at start-up; sets ``PREFECT_API_URL`` and
    ``MLFLOW_TRACKING_URI`` only where the user has not set them and the servers are alive."""
    if os.environ.get(OPT_OUT_ENV, "").lower() in ("1", "true", "yes"):
        return
    servers = read_state(workspace)
    if servers is None:
        return
    live = {p.name for p in servers.alive()}
    for key, value in servers.env().items():
        if ("prefect" if key.startswith("PREFECT") else "mlflow") in live:
            os.environ.setdefault(key, value)


def start_servers(
    workspace: str | Path = ".",
    *,
    prefect_port: int = 4200,
    mlflow_port: int = 5000,
    mlflow: bool = True,
    params_file: str | Path = "params.yaml",
    server_env: dict[str, str] | None = None,
    timeout_s: float = 180.0,
) -> Servers:
    """Start the Prefect server (and the MLflow server) for ``workspace``; return once both answer health.

    Raises ServerError, with the tail of the server's log, if a port is taken, a server exits, or
    no health answer comes within ``timeout_s``; whatever had started is stopped again."""
    workspace = Path(workspace).resolve()
    running = read_state(workspace)
    if running is not None:
        raise ServerError(f"servers of {workspace} are already running ({_describe(running)}); "
                          "`starflow server stop` stops them")
    for port, option in [(prefect_port, "--prefect-port"), *([(mlflow_port, "--mlflow-port")] if mlflow else [])]:
        _check_port_free(port, option)
    store = _mlflow_store(workspace, Path(params_file)) if mlflow else None  # a bad params.yaml fails first
    home = state_dir(workspace)
    home.mkdir(parents=True, exist_ok=True)
    servers = Servers(str(workspace))
    try:
        servers.processes.append(_start_prefect(home, prefect_port, server_env or {}))
        if store:
            servers.processes.append(_start_mlflow(workspace, home, mlflow_port, *store))
        _write_state(home, servers)
        deadline = time.monotonic() + timeout_s
        for proc in servers.processes:
            _wait_healthy(proc, deadline)
    except BaseException:
        stop_servers(servers)
        raise
    return servers


def stop_servers(servers: Servers | str | Path = ".") -> list[str]:
    """Stop the given servers (or those ``servers.json`` of a workspace names); return the names stopped.

    Each server's whole process group gets SIGTERM, then SIGKILL after ``STOP_GRACE_S``; the
    state file is removed, so ``export_server_env`` no longer finds them."""
    if not isinstance(servers, Servers):
        servers = read_state(servers) or Servers(str(Path(servers).resolve()))
    stopped = []
    for proc in servers.processes:
        if _stop_group(proc.pid):
            stopped.append(proc.name)
    with contextlib.suppress(FileNotFoundError):
        (state_dir(servers.workspace) / STATE_FILE).unlink()
    return stopped


@contextlib.contextmanager
def running_servers(workspace: str | Path = ".", **options) -> Iterator[Servers]:
    """``start_servers(workspace, **options)`` for the length of a ``with`` block, then ``stop_servers``."""
    servers = start_servers(workspace, **options)
    try:
        yield servers
    finally:
        stop_servers(servers)


def wait_until_stopped(servers: Servers, poll_s: float = 1.0) -> None:
    """Block while every server lives (``starflow server`` in the foreground); return when one exits.

    Ctrl-C (KeyboardInterrupt) and SIGTERM stop both before returning; a server that exits on its
    own, or ``starflow server stop`` from another shell, stops the other one."""
    # SIGINT too: a process started in the background by a non-interactive shell inherits SIGINT
    # ignored, and Python then installs no KeyboardInterrupt for it.
    previous = {sig: signal.signal(sig, _raise_keyboard_interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while len(servers.alive()) == len(servers.processes):
            _reap_children()
            time.sleep(poll_s)
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop_servers(servers)


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def _start_prefect(home: Path, port: int, extra_env: dict[str, str]) -> ServerProcess:
    url = f"http://{HOST}:{port}"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home / "prefect-home"),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        # The UI asks this URL for its data; without it a PREFECT_API_URL inherited from the
        # caller (another server, a test harness) would be what the UI talks to.
        "PREFECT_API_URL": f"{url}/api",
        "PREFECT_UI_API_URL": f"{url}/api",
        **extra_env,
    }
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", HOST, "--port", str(port)]
    return _spawn("prefect", cmd, env, home / "prefect.log", url, f"{url}/api/health")


def _start_mlflow(workspace: Path, home: Path, port: int, store: str, artifacts: str) -> ServerProcess:
    url = f"http://{HOST}:{port}"
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", HOST, "--port", str(port), "--workers", "1",
           "--backend-store-uri", store, "--serve-artifacts", "--artifacts-destination", artifacts]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    # MLflow's job runner (huey consumers for GenAI jobs: prompt optimisation, trace archival) is
    # seven more processes that StarFlow never uses; on a 2-core laptop they slow everything.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    return _spawn("mlflow", cmd, env, home / "mlflow.log", url, f"{url}/health", cwd=workspace)


def _mlflow_store(workspace: Path, params_file: Path) -> tuple[str, str]:
    """The workspace's MLflow backend and artifact root from params.yaml, relative paths made absolute."""
    from flows.config import load_params

    path = params_file if params_file.is_absolute() else workspace / params_file
    mlflow_params = load_params(path).mlflow
    uri = mlflow_params.tracking_uri
    if uri.startswith(("http://", "https://", "databricks")):
        raise ServerError(f"{path}: mlflow.tracking_uri is {uri!r}, already a server; "
                          "`starflow server` serves a local store (sqlite:///..., a database URI)")
    from flows.tracking import absolute_store_uri

    uri = absolute_store_uri(uri, workspace)
    artifacts = mlflow_params.artifact_location
    if "://" not in artifacts:
        artifacts = str(workspace / artifacts)
    return uri, artifacts


def _spawn(name: str, cmd: list[str], env: dict[str, str], log: Path, url: str, health: str,
           cwd: Path | None = None) -> ServerProcess:
    # Its own session: the server and every worker it forks share one process group, which
    # stop_servers signals as a whole, so no uvicorn/gunicorn worker outlives it.
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    _CHILDREN[proc.pid] = proc
    return ServerProcess(name, proc.pid, url, health, str(log))


def _wait_healthy(proc: ServerProcess, deadline: float) -> None:
    while time.monotonic() < deadline:
        _reap_children()
        if not _group_leader_alive(proc.pid):
            raise ServerError(f"{proc.name} server exited while starting; its log ({proc.log}):\n{_tail(proc.log)}")
        try:
            with urllib.request.urlopen(proc.health, timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise ServerError(f"{proc.name} server gave no answer at {proc.health} in time; its log ({proc.log}):\n"
                      f"{_tail(proc.log)}")


def _stop_group(pgid: int) -> bool:
    """SIGTERM the process group, wait for it to empty, SIGKILL what is left. False if it was gone."""
    if not _group_alive(pgid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while _group_alive(pgid) and time.monotonic() < deadline:
        _reap_children()
        time.sleep(0.2)
    if _group_alive(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        while _group_alive(pgid):
            _reap_children()
            time.sleep(0.1)
    return True


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group exists (a zombie of our own counts until it is reaped)."""
    _reap_children()
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _group_leader_alive(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


_CHILDREN: dict[int, subprocess.Popen] = {}
"""The server processes this process started (only these are reaped: a ``waitpid(-1)`` would steal
other subprocesses' exit codes)."""


def _reap_children() -> None:
    """Collect exited server processes this process started, so they do not linger as zombies."""
    for pid, proc in list(_CHILDREN.items()):
        if proc.poll() is not None:
            del _CHILDREN[pid]


def _check_port_free(port: int, option: str) -> None:
    with socket.socket() as s:
        # As the servers bind (SO_REUSEADDR): a port a stopped server left in TIME_WAIT is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            raise ServerError(f"port {port} on {HOST} is in use; choose another with {option}") from None


def _write_state(home: Path, servers: Servers) -> None:
    path = home / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(servers), indent=2))
    os.replace(tmp, path)


def _describe(servers: Servers) -> str:
    return ", ".join(f"{p.name} {p.url} pid {p.pid}" for p in servers.processes)


def _tail(path: str, lines: int = 30) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
