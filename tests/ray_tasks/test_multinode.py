"""Ingest, dedup and curate on a real two-node Ray cluster, with the local run's outputs.

A head and a worker node are started on this machine with `ray start` (each its own raylet,
object store, ports, temp dir and a custom resource naming it, started in a folder outside the
workspace as another machine would be, one CPU each), the stages run through
`starflow stage` in a workspace whose `ray.address` is the head, and Ray's own task records
must show each stage's tasks on both nodes. The same corpus runs with `ray.executor: local`
in a second workspace, at the same time as the cluster starts; every file under
data/{ingest,dedup,curate} must be byte-identical between the two, and the stage metrics equal.

The cluster's processes are only ever stopped by the process groups this module started
(`ray stop` would stop every Ray on the machine, other sessions' too). About 4-5 minutes on 2
contended cores (load 10-15), most of it process start-up; the two quick tests at the end check
what a cluster job carries.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from flows.config import parse_params
from tests.conftest import MIT
from tests.paths import ROOT
from tests.workspaces import BIN, make_workspace

STAGES = ("ingest", "dedup", "curate")
N_REPOS = 10
NODE_RESOURCES = {"head": "head_node", "worker": "worker_node"}
"""Each node's custom resource: names the node in Ray's records (and would let a task ask for one)."""
EXECUTOR_METRICS = {"used_ray"}
"""Metrics that say where the work ran, the one thing allowed to differ between the two runs."""


# ---------------------------------------------------------------- the corpus


def _module(name: str, n: int, salt: str = "") -> str:
    body = "\n\n".join(
        f"def {name}_{i}(values, scale={i + 1}):\n"
        f'    """Scaled sum of the values for case {i}{salt}."""\n'
        f"    total = 0\n    for value in values:\n        total += value * scale\n    return total"
        for i in range(n))
    return f'"""Module {name}."""\n\n{body}\n'


def write_corpus(root: Path, n_repos: int = N_REPOS) -> Path:
    """Repositories with exact duplicates (``common.py``), near duplicates (``near.py``, one word
    apart), a binary file and a minified one. Licenses are full MIT texts, which the known-text pass
    answers, so no worker loads ScanCode's index (tens of seconds per process here); every fourth
    repository has none (``no_license``)."""
    for r in range(n_repos):
        src = root / f"repo{r:02d}" / "src"
        src.mkdir(parents=True)
        if r % 4 != 3:
            (src.parent / "LICENSE").write_text(MIT)
        for f in range(4):
            (src / f"mod{f}.py").write_text(_module(f"r{r}f{f}", 5 + f))
        (src / "common.py").write_text(_module("common", 4))
        (src / "near.py").write_text(_module("near", 10, salt=f" (variant {r})" if r % 2 else ""))
    (root / "repo00" / "blob.bin").write_bytes(b"\x00\x01\x02binary")
    (root / "repo01" / "minified.js").write_text("var a=" + "1+" * 3000 + "1;\n")
    return root


# ---------------------------------------------------------------- workspaces


def stage_params(corpus: Path, ray: dict) -> dict:
    """The tiny configuration on ``corpus``, cut into several units of work per stage: ingest groups
    of about one repository (so several parts), small row groups."""
    params = yaml.safe_load((ROOT / "params.tiny.yaml").read_text())
    params["ingest"] = {"sources": [{"kind": "directory", "path": str(corpus)}], "batch_bytes": 6000,
                        "row_group_bytes": 4096}
    params["curate"] = {"batch_size": 8}
    params["ray"] = ray
    parse_params(params)  # a renamed key fails here, by name, not inside a subprocess
    return params


def _env(ws: Path) -> dict[str, str]:
    """The stages' environment: this suite's Prefect test server (one for both runs, instead of a
    temporary one each), the workspace's own MLflow store."""
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ)
    env["PATH"] = f"{BIN}:{env['PATH']}"
    env["PREFECT_HOME"] = str(ws / ".prefect-home")
    env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    env["RAY_AUTH_MODE"] = "disabled"
    for name in ("MLFLOW_TRACKING_URI", "STARFLOW_MLFLOW_PARENT_RUN_ID", "RAY_ADDRESS"):
        env.pop(name, None)
    return env


def make_stage_workspace(ws: Path, corpus: Path, ray: dict) -> Path:
    ws.mkdir(parents=True)
    return make_workspace(ws, stage_params(corpus, ray), _env(ws))


def start_stages(ws: Path) -> subprocess.Popen:
    """``starflow stage ingest dedup curate`` started in the workspace ``ws`` (output in ws/run.log)."""
    log = (ws / "run.log").open("w")
    return subprocess.Popen([str(BIN / "starflow"), "stage", *STAGES], cwd=ws, env=_env(ws), stdout=log,
                            stderr=subprocess.STDOUT)


def wait_stages(proc: subprocess.Popen, ws: Path, timeout: float = 600) -> None:
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        rc = "timeout"
    assert rc == 0, f"stages in {ws.name} failed ({rc}):\n{(ws / 'run.log').read_text()[-8000:]}"


# ---------------------------------------------------------------- the cluster


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


class TwoNodeCluster:
    """A Ray head and one worker node on this machine, each a `ray start --block` in its own
    process group (stopping that group stops exactly this node), each with 1 CPU so that two tasks
    in flight must run on two nodes."""

    def __init__(self) -> None:
        # Short: Ray's Unix socket paths (<temp>/session_<date>_<pid>/sockets/...) must fit 107 bytes.
        self.temp = Path(tempfile.mkdtemp(prefix="sfray-", dir="/tmp"))
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen] = {}
        self.env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
        self.env.pop("RAY_ADDRESS", None)

    def launch_head(self) -> None:
        """Start the head and return at once (it boots while the caller does other work)."""
        self._start_node("head", ["--head", "--port", str(self.port), "--dashboard-port", str(_free_port()),
                                  "--include-dashboard", "false"])

    def join_worker(self, timeout: float = 180) -> dict[str, str]:
        """Once the head is up, start the worker node; both alive: returns node role -> Ray node id."""
        deadline = time.monotonic() + timeout
        while not (self.temp / "head" / "ray_current_cluster").exists():  # written once the head is up
            self._check_alive("head")
            assert time.monotonic() < deadline, "Ray head did not start:\n" + self.log("head")
            time.sleep(0.5)
        self._start_node("worker", ["--address", self.address])
        return records(self.address, wait_nodes=2, timeout=max(deadline - time.monotonic(), 30))["roles"]

    def _start_node(self, role: str, args: list[str]) -> None:
        # Every port a node binds is its own: two raylets share this host (worker ports: any free one).
        ports = {flag: str(_free_port()) for flag in (
            "--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
            "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port")}
        cmd = [str(BIN / "ray"), "start", *args, "--block", "--temp-dir", str(self.temp / role),
               "--num-cpus", "1", "--resources", json.dumps({NODE_RESOURCES[role]: 1}),
               "--object-store-memory", str(128 * 2**20), "--min-worker-port", "0", "--max-worker-port", "0",
               "--disable-usage-stats", *[x for kv in ports.items() for x in kv]]
        log = (self.temp / f"{role}.log").open("w")
        # Started in the temp dir, not the workspace: a worker that resolves a driver's relative path
        # lands elsewhere, as it would on another machine.
        self.procs[role] = subprocess.Popen(cmd, cwd=self.temp, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def _check_alive(self, role: str) -> None:
        assert self.procs[role].poll() is None, f"ray start ({role}) exited:\n{self.log(role)}"

    def log(self, role: str) -> str:
        path = self.temp / f"{role}.log"
        return path.read_text()[-6000:] if path.exists() else ""

    def stop(self) -> None:
        """SIGTERM each `ray start --block` (it stops its node's processes), worker first; then SIGKILL
        whatever of its process group is left."""
        for role in ("worker", "head"):
            proc = self.procs.get(role)
            if proc is None:
                continue
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the group start_new_session made: this node only
            except ProcessLookupError:
                pass
            proc.wait()
        shutil.rmtree(self.temp, ignore_errors=True)


# Ray's state API (ray.util.state.list_tasks) is served by the dashboard, which needs ray[default]'s
# extra packages (aiohttp_cors, ...), not in the locked set. The GCS keeps the same task events
# (state transitions with the node that ran each task); ray.timeline() reads them through the same
# GlobalState call used here. Run in a subprocess: this test process may hold another Ray session.
_RECORDS = textwrap.dedent("""
    import json, sys, time
    import ray
    from ray._private.state import state

    address, wait_nodes, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    deadline = time.monotonic() + timeout
    while True:
        nodes = [n for n in ray.nodes() if n["Alive"]]
        if len(nodes) >= wait_nodes or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    tasks = {}
    for event in state._get_all_task_events():
        task = tasks.setdefault((event.task_id.hex(), event.attempt_number), {})
        if event.HasField("task_info"):
            info = event.task_info
            task.update(name=info.name, func=info.func_or_class_name, job_id=info.job_id.hex(),
                        type=info.type)
        if event.HasField("state_updates") and event.state_updates.node_id:
            task["node_id"] = event.state_updates.node_id.hex()
    print(json.dumps({
        "nodes": [{"node_id": n["NodeID"], "resources": n["Resources"]} for n in nodes],
        "tasks": list(tasks.values()),
        "job": ray.get_runtime_context().get_job_id(),
    }))
""")


def records(address: str, wait_nodes: int = 0, timeout: float = 60) -> dict:
    """The cluster's alive nodes (and role -> node id), and every task it ran with its node."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run([sys.executable, "-c", _RECORDS, address, str(wait_nodes), str(timeout)],
                          env={**env, "RAY_AUTH_MODE": "disabled"}, capture_output=True, text=True,
                          timeout=timeout + 120)
    assert proc.returncode == 0, f"reading Ray's records failed:\n{proc.stderr[-4000:]}"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["roles"] = {role: n["node_id"] for n in out["nodes"] for role, res in NODE_RESOURCES.items()
                    if res in n["resources"]}
    assert len(out["roles"]) >= wait_nodes, f"nodes alive: {out['nodes']}"
    return out


# ---------------------------------------------------------------- outputs


def digests(ws: Path) -> dict[str, str]:
    """md5 of every file of the stages' outputs, by path under data/."""
    return {str(p.relative_to(ws / "data")): hashlib.md5(p.read_bytes()).hexdigest()
            for stage in STAGES for p in sorted((ws / "data" / stage).rglob("*")) if p.is_file()}


def stage_metrics(ws: Path, stage: str) -> dict:
    return json.loads((ws / "metrics" / f"{stage}.json").read_text())


def describe_difference(a: Path, b: Path, rel: str) -> str:
    """What differs in one output file, for the failure message."""
    if rel.endswith(".parquet"):
        import pyarrow.parquet as pq

        ta, tb = pq.read_table(a / "data" / rel), pq.read_table(b / "data" / rel)
        if ta.schema != tb.schema:
            return f"{rel}: schemas differ\n{ta.schema}\n--\n{tb.schema}"
        return f"{rel}: {ta.num_rows} vs {tb.num_rows} rows, equal as tables: {ta.equals(tb)}"
    return f"{rel}: bytes differ"


# ---------------------------------------------------------------- the test


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@dataclass
class Setup:
    cluster: TwoNodeCluster
    roles: dict[str, str]
    """Node role (head, worker) -> Ray node id."""
    local: Path
    on_ray: Path
    local_run: subprocess.Popen
    """The local run, started while the worker node joins (the two overlap)."""


@pytest.fixture(scope="module")
def setup(tmp_path_factory, corpus, prefect_harness):
    root = tmp_path_factory.mktemp("multinode")
    cluster = TwoNodeCluster()
    local_run = None
    try:
        t0 = time.monotonic()
        cluster.launch_head()
        local = make_stage_workspace(root / "local", corpus, {"executor": "local"})
        on_ray = make_stage_workspace(root / "ray", corpus, {"executor": "ray", "address": cluster.address})
        local_run = start_stages(local)
        roles = cluster.join_worker()
        print(f"workspaces made and two nodes up in {time.monotonic() - t0:.0f} s")
        yield Setup(cluster, roles, local, on_ray, local_run)
    finally:
        if local_run is not None and local_run.poll() is None:
            local_run.kill()
            local_run.wait()
        cluster.stop()


@pytest.mark.slow
def test_stages_on_two_nodes_match_the_local_run(setup):
    roles, local_ws, ray_ws = setup.roles, setup.local, setup.on_ray
    assert set(roles) == {"head", "worker"} and roles["head"] != roles["worker"]

    t0 = time.monotonic()
    wait_stages(start_stages(ray_ws), ray_ws)
    print(f"stages on the cluster: {time.monotonic() - t0:.0f} s")
    seen = records(setup.cluster.address)
    wait_stages(setup.local_run, local_ws)
    print(f"local run done {time.monotonic() - t0:.0f} s after the cluster run started")

    # Each stage's tasks (one Ray job per stage: each stage joins the cluster and leaves it) ran on both nodes.
    by_job: dict[str, list[dict]] = defaultdict(list)
    for task in seen["tasks"]:
        if task.get("job_id") and task.get("node_id") and task["job_id"] != seen["job"]:
            by_job[task["job_id"]].append(task)
    jobs = sorted(by_job)  # job ids count up in the order the drivers connected
    summary = {j: sorted({t["func"].rsplit(".", 1)[-1] for t in by_job[j]}) for j in jobs}
    assert len(jobs) == len(STAGES), f"expected one Ray job per stage, got {summary}"
    role_of = {node: role for role, node in roles.items()}
    for stage, job in zip(STAGES, jobs):
        nodes = {t["node_id"] for t in by_job[job]}
        print(f"{stage}: tasks per node", dict(Counter(role_of.get(t["node_id"], t["node_id"]) for t in by_job[job])))
        assert nodes == set(roles.values()), (
            f"{stage}: {len(by_job[job])} tasks ({summary[job]}) ran on {nodes}, not on both nodes {roles}")

    for stage in STAGES:
        local_m, ray_m = stage_metrics(local_ws, stage), stage_metrics(ray_ws, stage)
        if "used_ray" in local_m:
            assert (local_m["used_ray"], ray_m["used_ray"]) == (0, 1)
        drop = lambda m: {k: v for k, v in m.items() if k not in EXECUTOR_METRICS}  # noqa: E731
        assert drop(ray_m) == drop(local_m), stage

    local_d, ray_d = digests(local_ws), digests(ray_ws)
    assert sorted(ray_d) == sorted(local_d)
    assert any(rel.startswith("dedup/index/") for rel in local_d)
    differing = [rel for rel in local_d if local_d[rel] != ray_d[rel]]
    assert not differing, "\n".join(describe_difference(local_ws, ray_ws, rel) for rel in differing)


# ---------------------------------------------------------------- what a cluster job carries (quick)


def test_cluster_job_carries_code_workspace_and_store_but_not_credentials(monkeypatch, tmp_path):
    import importlib

    import ray_tasks
    from ray_tasks.executor import WORKSPACE_ENV, cluster_runtime_env

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://minio:9000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-for-the-cluster")
    monkeypatch.chdir(tmp_path)
    env = cluster_runtime_env()
    assert env["py_modules"] == [ray_tasks]
    assert env["env_vars"][WORKSPACE_ENV] == str(tmp_path)
    assert env["env_vars"]["AWS_ENDPOINT_URL_S3"] == "http://minio:9000"
    assert "AWS_SECRET_ACCESS_KEY" not in env["env_vars"]
    module, _, name = env["worker_process_setup_hook"].rpartition(".")
    assert callable(getattr(importlib.import_module(module), name))  # what Ray loads in each worker


def test_workers_enter_the_drivers_folder_where_the_node_has_it(monkeypatch, tmp_path, caplog):
    from ray_tasks.executor import WORKSPACE_ENV, enter_workspace

    workspace, elsewhere = tmp_path / "ws", tmp_path / "node"
    workspace.mkdir(), elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv(WORKSPACE_ENV, str(workspace))
    enter_workspace()
    assert Path.cwd() == workspace
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv(WORKSPACE_ENV, str(tmp_path / "not-mounted-here"))
    enter_workspace()
    assert Path.cwd() == elsewhere and "not-mounted-here is not on this node" in caplog.text
