"""The curation commands as a user runs them: real subprocesses of the installed ``starflow``."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import GPL, MIT, make_corpus

STARFLOW = str(Path(sys.executable).with_name("starflow"))
from tests.paths import ROOT  # noqa: E402


def _run(*args, cwd=None):
    return subprocess.run([STARFLOW, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_lang_detect_prints_json_lines_and_the_language_list(tmp_path):
    (tmp_path / "tool").write_text("#!/usr/bin/env python3\nprint('hi')\n")
    (tmp_path / "main.rs").write_text("fn main() {}\n")
    out = _run("lang", "detect", str(tmp_path / "tool"), str(tmp_path / "main.rs"))
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["language"] for r in rows] == ["Python", "Rust"]
    listing = _run("lang", "detect", "--list")
    lines = listing.stdout.splitlines()
    count = int(lines[-1].split()[0])
    assert count == len(lines) - 1 >= 700 and "Python\tprogramming" in lines


def test_license_detect_reports_ids_type_and_source_files(tmp_path):
    repo = tmp_path / "repo"
    (repo / "vendor" / "gpl").mkdir(parents=True)
    (repo / "LICENSE").write_text(MIT)
    (repo / "vendor" / "gpl" / "COPYING").write_text(GPL)
    out = _run("license", "detect", str(repo))
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert found["licenses"] == ["GPL-3.0-only", "MIT"]
    assert found["license_type"] == "permissive"  # the root's class; GPL applies to vendor/gpl only
    assert found["files"] == {"LICENSE": ["MIT"], "vendor/gpl/COPYING": ["GPL-3.0-only"]}
    assert _run("license", "detect", str(tmp_path / "missing")).returncode != 0


@pytest.mark.slow
def test_curate_command_on_a_parquet_source(tmp_path):
    # A folder of repositories, exported to one Parquet file in the Stack v2 layout.
    corpus = make_corpus(tmp_path / "repos", n_repos=3, files_per_repo=3)
    rows = []
    for repo in sorted(p for p in corpus.iterdir() if p.is_dir()):
        for f in sorted(repo.rglob("*")):
            if f.is_file():
                try:
                    rows.append({"repo_name": f"org/{repo.name}", "path": "/" + f.relative_to(repo).as_posix(),
                                 "content": f.read_text()})
                except UnicodeDecodeError:
                    continue
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "stack.parquet")
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    out = _run("curate", "--input", str(tmp_path / "stack.parquet"), "--output", str(tmp_path / "out"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["source"]["kind"] == "parquet"
    kept = pq.read_table(tmp_path / "out" / "data" / "curate" / "files")
    stats = json.loads((tmp_path / "out" / "data" / "curate" / "stats.json").read_text())
    assert stats["files_kept"] == kept.num_rows > 0
    assert "license:non_permissive" in stats["rejected_by_reason"]  # the GPL repository
    assert set(kept.column("repo_name").to_pylist()) <= {"org/repo0", "org/repo1", "org/repo2"}
    assert (tmp_path / "out" / "metrics" / "curate.json").exists()
