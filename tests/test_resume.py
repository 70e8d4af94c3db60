"""Acceptance 5 of issue 15: a stage killed mid-way (SIGKILL: no cleanup runs) and re-run gives
outputs identical, byte for byte, to an uninterrupted run's; a re-run after a completed one does
no work. Real `starflow stage` processes in two fresh workspaces on the same generated corpus.

How ingest is stopped at a known place: one file of the fourth repository is a named pipe in
workspace A, so the stage blocks reading it after the first three groups are finished (each
repository is a group alone: it is larger than ``batch_bytes``), and the test kills it there.
Then the pipe becomes the regular file workspace B had from the start.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.paths import ROOT
from tests.workspaces import make_workspace

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
N_REPOS = 8
BLOCKED_REPO = 3
BLOCK_FILE = "zz_block.py"
PARAMS = yaml.safe_load((ROOT / "params.tiny.yaml").read_text())
PARAMS["ingest"] = {"sources": [{"kind": "directory", "path": "corpus"}], "batch_bytes": 100_000,
                    "row_group_bytes": 60_000}
PARAMS["ray"] = {"executor": "local"}


def _code(rng: random.Random, lines: int) -> str:
    words = [f"name_{rng.getrandbits(20):x}" for _ in range(60)]
    body = [f"def f_{rng.getrandbits(24):x}({rng.choice(words)}, {rng.choice(words)}):"]
    for _ in range(lines):
        body.append(f"    {rng.choice(words)} = {rng.choice(words)} + {rng.randint(0, 999)}  # {rng.choice(words)}")
    return "\n".join(body) + "\n"


def _corpus(root: Path, fifo: bool) -> None:
    """Repositories of ~250 KB each (several MB in all, so dedup runs long enough to be killed),
    with exact and near copies across repositories; repository ``BLOCKED_REPO`` holds
    ``BLOCK_FILE``, a named pipe when ``fifo``."""
    rng = random.Random(15)
    files = {f"r{i:02d}": {f"pkg/m{j:02d}.py": _code(rng, 150) for j in range(40)} for i in range(N_REPOS)}
    files["r05"].update({k: v for k, v in list(files["r01"].items())[:10]})  # exact copies
    files["r06"].update({k: v.replace("+ 1", "+ 2", 3) for k, v in list(files["r02"].items())[:10]})  # near copies
    for repo, tree in files.items():
        for rel, text in tree.items():
            (root / repo / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / repo / rel).write_text(text)
    block = root / f"r{BLOCKED_REPO:02d}" / BLOCK_FILE
    if fifo:
        os.mkfifo(block)
    else:
        block.write_text(_block_text())


def _block_text() -> str:
    return _code(random.Random(99), 20)


def _env(ws: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}:{env['PATH']}"
    env["PREFECT_HOME"] = str(ws / ".prefect-home")
    env["STARFLOW_NO_SERVERS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"  # a killed process's log is read: nothing may wait in a buffer
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("STARFLOW_MLFLOW_PARENT_RUN_ID", None)
    return env


def _workspace(ws: Path, fifo: bool) -> Path:
    ws.mkdir()
    make_workspace(ws, PARAMS, _env(ws))
    _corpus(ws / "corpus", fifo)
    return ws


def _stage(ws: Path, *names: str) -> str:
    proc = subprocess.run([str(BIN / "starflow"), "stage", *names], cwd=ws, env=_env(ws), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"{names} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    return proc.stdout + proc.stderr


def _start(ws: Path, *names: str) -> subprocess.Popen:
    log = open(ws / f"killed-{'-'.join(names)}.log", "w")  # (B's uninterrupted run logs here too)
    return subprocess.Popen([str(BIN / "starflow"), "stage", *names], cwd=ws, env=_env(ws), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)  # its own group: Prefect's server too


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 300) -> None:
    """SIGKILL the stage's whole process group as soon as ``ready()``; fails if it ended first."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, "the stage ended before it could be killed mid-way"
        assert time.monotonic() < deadline, "the stage never got to the point to kill it at"
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _finished_groups(ws: Path) -> list[Path]:
    work = ws / ".starflow" / "work" / "ingest"
    # a group's folder is complete once renamed from its ".<key>.*.tmp" name
    return [d for d in work.iterdir() if not d.name.startswith(".") and (d / "part.json").is_file()] \
        if work.is_dir() else []


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_killed_ingest_and_dedup_resume_to_the_uninterrupted_outputs(tmp_path):
    a = _workspace(tmp_path / "a", fifo=True)
    b = _workspace(tmp_path / "b", fifo=False)
    uninterrupted = _start(b, "ingest", "dedup")  # B runs meanwhile

    # A: ingest killed while blocked in the fourth group, the first three finished
    proc = _start(a, "ingest")
    _kill_when(proc, lambda: len(_finished_groups(a)) >= BLOCKED_REPO)
    assert len(_finished_groups(a)) == BLOCKED_REPO
    assert not (a / "data" / "ingest").exists()  # no output under the final name
    assert list((a / "data").glob(".ingest.*.tmp"))  # the killed run's half-output, under a temp name
    block = a / "corpus" / f"r{BLOCKED_REPO:02d}" / BLOCK_FILE
    block.unlink()
    block.write_text(_block_text())

    # A: ingest resumes (the three finished groups reused) and completes; dedup is killed while
    # its output (and LSH index) is being built
    proc = _start(a, "ingest", "dedup")
    _kill_when(proc, lambda: any((a / "data").glob(".dedup.*.tmp")))
    log = (a / "killed-ingest-dedup.log").read_text()
    assert f"ingest: {N_REPOS} groups, {BLOCKED_REPO} reused" in log, [ln for ln in log.splitlines() if "ingest" in ln]
    # per repository too: the finished ones are not computed again, the others are
    assert f"{N_REPOS} repositories, {BLOCKED_REPO} reused, {N_REPOS - BLOCKED_REPO} to compute" in log
    assert (a / "data" / "ingest" / "files" / "_manifest.json").is_file()
    assert not list((a / "data").glob(".ingest.*.tmp"))  # the stale half-output was removed
    assert not (a / "data" / "dedup").exists()

    # A: both again: ingest reuses every group (no work), dedup computes from scratch
    log = _stage(a, "ingest", "dedup")
    assert f"ingest: {N_REPOS} groups, {N_REPOS} reused from .starflow/work/ingest, 0 to compute" in log
    assert f"computed 0 of {N_REPOS} repositories" in log
    assert not list((a / "data").glob(".dedup.*.tmp"))

    assert uninterrupted.wait(timeout=600) == 0, (b / "killed-ingest-dedup.log").read_text()[-4000:]
    for stage in ("ingest", "dedup"):
        got, want = _tree(a / "data" / stage), _tree(b / "data" / stage)
        assert sorted(got) == sorted(want)
        assert [k for k in want if got[k] != want[k]] == []
    manifest = yaml.safe_load((a / "data" / "ingest" / "files" / "_manifest.json").read_text())
    assert len(manifest["parts"]) == N_REPOS  # one part per group: several parts
    dedup_manifest = yaml.safe_load((a / "data" / "dedup" / "files" / "_manifest.json").read_text())
    assert [p["name"] for p in dedup_manifest["parts"]] == [p["name"] for p in manifest["parts"]]
    stats = yaml.safe_load((a / "metrics" / "dedup.json").read_text())
    assert stats["exact_removed"] >= 10 and stats["near_removed"] >= 1
