"""A git source in a real workspace: a new upstream commit makes ingest stale, no commit does not.

The workspace's one source is a local bare repository and its DAG is cut to ``sources`` and
``ingest``; everything is the CLI a user runs (`starflow run`, `starflow status`, `dvc repro`),
with the ephemeral Prefect API and the SQLite MLflow store.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.flows.test_fingerprint import _git, make_git_workspace, push_commit
from tests.served import cli_env as _env
from tests.workspaces import BIN

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("git-source")
    return make_git_workspace(root, _env(root / "ws"))


def _sh(ws: Path, *cmd: str) -> str:
    exe = str(BIN / cmd[0]) if (BIN / cmd[0]).exists() else cmd[0]
    proc = subprocess.run([exe, *cmd[1:]], cwd=ws, env=_env(ws), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc.stdout + proc.stderr


def _report(ws: Path, *cmd: str) -> dict:
    """A command's JSON report: the last top-level JSON object it printed (Prefect's log lines around it)."""
    proc = subprocess.run([str(BIN / cmd[0]), *cmd[1:]], cwd=ws, env=_env(ws), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return json.loads(re.findall(r"(?ms)^\{\n.*?^\}$", proc.stdout)[-1])


def _last_run(ws: Path) -> dict:
    return json.loads((ws / ".starflow" / "last_run.json").read_text())


def test_first_run_ingests_and_an_unchanged_source_is_nothing_new(workspace):
    ws, _ = workspace
    _sh(ws, "starflow", "run")
    first = _last_run(ws)
    assert first["ran"] == ["ingest"] and first["sources"]["changed"] == [
        f"git {ws.parent / 'upstream.git'}: not fingerprinted before"]
    assert json.loads((ws / "metrics" / "ingest.json").read_text())["files_kept"] == 1

    out = _sh(ws, "starflow", "run")
    again = _last_run(ws)
    assert again["ran"] == [] and again["skipped"] == ["ingest"] and again["sources"]["changed"] == []
    assert again["sources"]["digest"] == first["sources"]["digest"]
    assert "Completed('nothing new')" in out  # the pipeline flow run's final state
    assert json.loads(_sh(ws, "dvc", "status", "--json").splitlines()[-1]) == {"sources": ["always changed"]}


def test_new_upstream_commit_makes_ingest_stale(workspace):
    ws, work = workspace
    lock = (ws / "dvc.lock").read_text()
    commit = push_commit(work, "lib.py", "VALUE = 2\n")
    status = _sh(ws, "starflow", "status")
    assert f"-> {commit[:10]}" in status and "│ ingest  │ stale" in status, status
    assert (ws / "dvc.lock").read_text() == lock  # status looks, it does not record
    stale = json.loads(_sh(ws, "dvc", "status", "--json").splitlines()[-1])
    assert stale["ingest"] == [{"changed deps": {"data/sources.json": "modified"}}]

    # `dvc repro` from a shell means the same: ingest re-runs on the new commit, then nothing.
    assert "Running stage 'ingest'" in _sh(ws, "dvc", "repro")
    assert json.loads((ws / "metrics" / "ingest.json").read_text())["files_kept"] == 2
    assert "Stage 'ingest' didn't change, skipping" in _sh(ws, "dvc", "repro")


def test_starflow_ingest_runs_ingest_only_when_a_source_changed(workspace):
    ws, work = workspace
    push_commit(work, "more.py", "MORE = 3\n")
    upstream_files = len(_git(work, "ls-files").split())
    report = _report(ws, "starflow", "ingest")
    assert report["ingest"] == "ran" and report["run"]["ran"] == ["ingest"] and "event" not in report
    assert json.loads((ws / "metrics" / "ingest.json").read_text())["files_kept"] == upstream_files
    assert _report(ws, "starflow", "ingest", "--check")["ingest"] == "up to date"
