"""Acceptance 5 of issue 15 for curate: `starflow stage curate` killed mid-way (SIGKILL: no cleanup
runs) and re-run gives outputs identical, byte for byte, to an uninterrupted run's (that a re-run
after a completed one curates nothing is checked in-process, tests/ray_tasks/curate/test_parts.py). Real `starflow stage` processes in two fresh workspaces on the
same dedup dataset (written here, so the test depends on curate alone).

How curate is stopped at a known place: in workspace A, input part ``BLOCKED`` is a named pipe,
so the stage (in this process, parts in order) blocks opening it after the parts before it are
finished, and the test kills it there. Then the pipe becomes the part's real bytes (the ones the
manifest names), which workspace B had from the start.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from tests.paths import ROOT
from tests.workspaces import make_workspace

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
N_PARTS = 6
BLOCKED = 3
PARAMS = yaml.safe_load((ROOT / "params.tiny.yaml").read_text())
PARAMS["ray"] = {"executor": "local"}
PARAMS["curate"] = {"malware": {"enabled": False}}


def _code(rng: random.Random, lines: int) -> str:
    words = [f"name_{rng.getrandbits(20):x}" for _ in range(40)]
    body = [f'"""Module {rng.choice(words)}: contact maintainer_{rng.getrandbits(16):x}@fastmail.fm."""',
            f"def f_{rng.getrandbits(24):x}({rng.choice(words)}):"]
    body += [f"    {rng.choice(words)} = {rng.choice(words)} + {rng.randint(0, 999)}" for _ in range(lines)]
    return "\n".join(body) + "\n"


def _dedup_dataset(root: Path) -> None:
    """``N_PARTS`` parts of two repositories each: Python (some files rejected by the filters,
    every module with an e-mail to redact) and an MPL repository the license filter drops."""
    import hashlib

    from ray_tasks import datasets

    rng = random.Random(15)
    infos, schema = [], None
    for k in range(N_PARTS):
        rows = []
        for r in range(2):
            repo = f"org/r{k}{r}"
            for j in range(12):
                text = _code(rng, 30) if j % 5 else "X = [" + ", ".join(str(i) for i in range(400)) + "]\n"
                rows.append({"repo_name": repo, "path": f"pkg/m{j:02d}.py", "content": text,
                             "length_bytes": len(text.encode()), "sha256": hashlib.sha256(text.encode()).hexdigest(),
                             "license_type": "non_permissive" if (k + r) % 4 == 3 else "permissive"})
        table = pa.Table.from_pylist(rows)
        schema = table.schema
        infos.append(datasets.write_part(root, k, table))
    datasets.write_manifest(root, infos, schema)


def _env(ws: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}:{env['PATH']}"
    env["PREFECT_HOME"] = str(ws / ".prefect-home")
    env["STARFLOW_NO_SERVERS"] = "1"
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("STARFLOW_MLFLOW_PARENT_RUN_ID", None)
    return env


def _workspace(ws: Path) -> Path:
    ws.mkdir()
    make_workspace(ws, PARAMS, _env(ws))
    _dedup_dataset(ws / "data" / "dedup" / "files")
    return ws


def _start(ws: Path, log_name: str) -> subprocess.Popen:
    log = open(ws / log_name, "w")
    return subprocess.Popen([str(BIN / "starflow"), "stage", "curate"], cwd=ws, env=_env(ws), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)  # its own group: Prefect's server too


def _stage(ws: Path) -> str:
    proc = subprocess.run([str(BIN / "starflow"), "stage", "curate"], cwd=ws, env=_env(ws), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"curate failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    return proc.stdout + proc.stderr


def _finished(ws: Path) -> list[Path]:
    work = ws / ".starflow" / "curate" / "parts"
    return [d for d in work.iterdir() if not d.name.startswith(".") and (d / "done.json").is_file()] if work.is_dir() else []


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_killed_curate_resumes_to_the_uninterrupted_outputs(tmp_path):
    a, b = _workspace(tmp_path / "a"), _workspace(tmp_path / "b")
    uninterrupted = _start(b, "uninterrupted.log")  # B runs meanwhile

    part = a / "data" / "dedup" / "files" / f"part-{BLOCKED:05d}.parquet"
    real = part.read_bytes()
    part.unlink()
    os.mkfifo(part)
    proc = _start(a, "killed.log")
    deadline = time.monotonic() + 300
    while len(_finished(a)) < BLOCKED:
        assert proc.poll() is None, "curate ended before it could be killed mid-way:\n" + (a / "killed.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "curate never got to the blocked part"
        time.sleep(0.01)
    time.sleep(0.5)  # it is blocked opening the pipe: nothing more can finish
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert len(_finished(a)) == BLOCKED
    assert not (a / "data" / "curate").exists()  # no output under the final name
    part.unlink()
    part.write_bytes(real)

    log = _stage(a)
    assert f"curate: {N_PARTS} parts, {BLOCKED} finished by an earlier run, {N_PARTS - BLOCKED} to curate" in log
    # The blocked part had not started: the parts after the kill curate their repositories, 2 each.
    counts = json.loads((a / ".starflow" / "curate" / "last_run.json").read_text())
    assert counts == {"parts": N_PARTS, "parts_reused": BLOCKED, "parts_computed": N_PARTS - BLOCKED,
                      "repositories": 2 * N_PARTS, "repositories_computed": 2 * (N_PARTS - BLOCKED),
                      "repositories_reused": 2 * BLOCKED}
    assert f"{2 * (N_PARTS - BLOCKED)} of {2 * N_PARTS} repositories computed" in log
    # (A re-run after a completed one curates nothing: test_parts.py checks it in-process.)

    assert uninterrupted.wait(timeout=600) == 0, (b / "uninterrupted.log").read_text()[-4000:]
    got, want = _tree(a / "data" / "curate"), _tree(b / "data" / "curate")
    assert sorted(got) == sorted(want) and [k for k in want if got[k] != want[k]] == []
    assert (a / "metrics" / "curate.json").read_bytes() == (b / "metrics" / "curate.json").read_bytes()
    stats = json.loads((a / "data" / "curate" / "stats.json").read_text())
    manifest = json.loads((a / "data" / "curate" / "files" / "_manifest.json").read_text())
    assert len(manifest["parts"]) == N_PARTS and stats["files_in"] == N_PARTS * 24
    assert stats["rejected_by_reason"]["license:non_permissive"]["files"] > 0 and stats["pii_email"] > 0
