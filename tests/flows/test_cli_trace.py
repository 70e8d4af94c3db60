"""``starflow trace`` as a user runs it: a real subprocess in a workspace with a built index."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ray_tasks.attribution.params import AttributionParams
from ray_tasks.attribution.stage import build
from ray_tasks.tables import REJECTED_SCHEMA
from tests.ray_tasks.attribution.test_attribution import _source, _table

STARFLOW = str(Path(sys.executable).with_name("starflow"))


def _run(*args, cwd, stdin=None):
    return subprocess.run([STARFLOW, "trace", *args], capture_output=True, text=True, cwd=cwd, input=stdin, timeout=300)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = tmp_path_factory.mktemp("ws")
    rows = [("acme/lib", f"lib/m{i}.py", _source(i)) for i in range(6)]
    (ws / "data" / "curate").mkdir(parents=True)
    pq.write_table(_table(rows), ws / "data" / "curate" / "files.parquet")
    (ws / "data" / "dedup").mkdir()
    removed = _source(3)
    pq.write_table(pa.table({"stage": ["dedup"], "reason": ["exact_duplicate"], "repo_name": ["other/fork"],
                             "path": ["vendor/m3.py"], "length_bytes": [len(removed)],
                             "sha256": [hashlib.sha256(removed.encode()).hexdigest()],
                             "detail": ["acme/lib/lib/m3.py"]}, schema=REJECTED_SCHEMA),
                   ws / "data" / "dedup" / "rejected.parquet")
    build(ws / "data" / "curate" / "files.parquet", ws / "data" / "attribution", AttributionParams(), data_version="v1")
    return ws, rows


def test_trace_json_names_file_span_license_version_and_the_dedup_removal(workspace):
    ws, rows = workspace
    (ws / "q.py").write_text(rows[3][2])
    out = _run("q.py", "--json", cwd=ws)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["overlap_fraction"] == 1.0 and report["data_version"] == "v1"
    assert report["files"][0]["path"] == "lib/m3.py" and report["files"][0]["license_type"] == "permissive"
    assert report["removed"][0]["duplicate_of"] == "acme/lib/lib/m3.py"


def test_trace_reads_stdin_and_prints_text(workspace):
    ws, rows = workspace
    out = _run("-", cwd=ws, stdin="print('new code')\n" + rows[1][2][100:700])
    assert out.returncode == 0, out.stderr
    assert "acme/lib  lib/m1.py" in out.stdout and "data version v1" in out.stdout


def test_trace_repo_and_errors(workspace):
    ws, _ = workspace
    report = json.loads(_run("--repo", "other/fork", "--json", cwd=ws).stdout)
    assert not report["in_set"] and report["removed_by_reason"] == {"dedup:exact_duplicate": 1}
    assert json.loads(_run("--repo", "acme/lib", "--json", cwd=ws).stdout)["files_in_set"] == 6
    missing = _run("nope.py", cwd=ws)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    assert _run(cwd=ws).returncode == 2
    assert "no attribution index" in _run("--repo", "a/b", cwd=ws / "data").stderr
