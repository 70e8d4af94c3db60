"""Source fingerprints: a grown or changed source changes its fingerprint, an unchanged one does not.

Real folders, a real bare git repository (new commits pushed to it, as upstream would), real
Parquet/JSONL files; no server. The sources stage's file is rewritten only on a change, and the
pipeline deployment carries the ``starflow.source.updated`` trigger in code and in infra/prefect.yaml.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from flows.config import load_params, parse_params
from flows.deployments import ServeParams, workspace_deployments
from flows.sources import SOURCE_UPDATED
from ray_tasks.ingest.fingerprint import (
    _tree_entries, changed_sources, directory_state, fingerprint_sources, python_env_state, remote_head, table_state,
)
from ray_tasks.ingest.params import DirectorySource, GitSource, PythonEnvSource, TableSource
from ray_tasks.ingest.sources import directory_repositories
from tests.paths import ROOT


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def make_upstream(root: Path) -> tuple[Path, Path]:
    """A bare repository (the "remote") and a clone to commit and push from."""
    bare, work = root / "upstream.git", root / "work"
    _git(root, "init", "-q", "--bare", "-b", "main", str(bare))
    _git(root, "clone", "-q", str(bare), str(work))
    _git(work, "checkout", "-q", "-b", "main")
    push_commit(work, "app.py", "def main():\n    return 1\n")
    return bare, work


def push_commit(work: Path, name: str, text: str, branch: str = "main") -> str:
    (work / name).write_text(text)
    _git(work, "add", name)
    _git(work, "commit", "-q", "-m", f"add {name}")
    _git(work, "push", "-q", "origin", branch)
    return _git(work, "rev-parse", "HEAD")


def _repos(root: Path) -> Path:
    for r in range(3):
        (root / f"repo{r}" / "pkg").mkdir(parents=True)
        (root / f"repo{r}" / "pkg" / "m.py").write_text(f"x = {r}\n")
    return root


def test_directory_unchanged_grown_and_touched(tmp_path):
    root = _repos(tmp_path / "repos")
    before = directory_state(root)
    assert before["files"] == 3 and before == directory_state(root)

    # What ingest never reads leaves the fingerprint alone: top-level files, SKIP_DIRS, symlinks.
    (root / "README").write_text("not a repository\n")
    (root / "repo0" / "__pycache__").mkdir()
    (root / "repo0" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\x00")
    (root / "repo0" / ".git").mkdir()
    (root / "repo0" / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "repo1" / "link.py").symlink_to(root / "repo0" / "pkg" / "m.py")
    assert directory_state(root) == before

    (root / "repo3").mkdir()
    (root / "repo3" / "new.py").write_text("y = 1\n")  # a grown source
    grown = directory_state(root)
    assert grown["files"] == 4 and grown["listing_sha256"] != before["listing_sha256"]

    path = root / "repo0" / "pkg" / "m.py"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # same size, rewritten
    assert directory_state(root)["listing_sha256"] != grown["listing_sha256"]
    with pytest.raises(ValueError, match="does not exist"):
        directory_state(tmp_path / "nowhere")


def test_directory_fingerprint_lists_exactly_the_files_ingest_reads(tmp_path):
    """A folder of linked checkouts (each repository a symlink to its clone) is a directory source
    ingest reads; adding a linked repository must make ingest stale."""
    root, elsewhere = _repos(tmp_path / "repos"), _repos(tmp_path / "elsewhere")
    (root / "linked").symlink_to(elsewhere / "repo0", target_is_directory=True)
    (root / "repo1" / "sub").symlink_to(elsewhere / "repo2", target_is_directory=True)  # inside: not read
    (root / "dangling").symlink_to(tmp_path / "gone", target_is_directory=True)
    read = sorted(f"{r.name}/{f}" for r in directory_repositories(root, None) for f in r.files)
    assert "linked/pkg/m.py" in read and not any(f.startswith("repo1/sub/") for f in read)
    assert sorted(rel for rel, _, _ in _tree_entries(root)) == read
    before = directory_state(root)
    (root / "linked2").symlink_to(elsewhere / "repo1", target_is_directory=True)
    grown = directory_state(root)
    assert grown["files"] == before["files"] + 1 and grown["listing_sha256"] != before["listing_sha256"]


def test_git_head_follows_upstream_commits(tmp_path):
    bare, work = make_upstream(tmp_path)
    first = _git(work, "rev-parse", "HEAD")
    assert remote_head(str(bare), None) == first
    assert remote_head(str(work), None) == first  # a non-bare local repository too
    spec = [GitSource(urls=[str(bare)])]
    before = fingerprint_sources(spec)
    assert fingerprint_sources(spec) == before  # no commit: the same fingerprint

    second = push_commit(work, "lib.py", "VALUE = 2\n")
    now = fingerprint_sources(spec)
    assert now["sources"][0]["state"]["heads"] == {str(bare): second} and now["digest"] != before["digest"]
    [line] = changed_sources(before, now)
    assert f"{first[:10]} -> {second[:10]}" in line and line.startswith(f"git {bare}")

    _git(work, "checkout", "-q", "-b", "dev")
    dev = push_commit(work, "dev.py", "DEV = 1\n", branch="dev")
    assert remote_head(str(bare), "dev") == dev != second
    assert remote_head(str(bare), None) == second  # HEAD is still main's
    with pytest.raises(ValueError, match="no nope"):
        remote_head(str(bare), "nope")
    with pytest.raises(ValueError, match="cannot read the head"):
        remote_head(str(tmp_path / "not-a-repo"), None)


def test_relative_git_path_is_taken_from_the_workspace(tmp_path):
    bare, _ = make_upstream(tmp_path)
    fp = fingerprint_sources([GitSource(urls=["upstream.git"])], workspace=tmp_path)
    assert fp["sources"][0]["state"]["heads"]["upstream.git"] == remote_head(str(bare), None)


def _table(repo: str, n: int) -> pa.Table:
    return pa.table({"repo_name": [repo] * n, "path": [f"f{i}.py" for i in range(n)],
                     "content": [f"x = {i}\n" for i in range(n)]})


def test_parquet_and_jsonl_file_lists(tmp_path):
    folder = tmp_path / "tables"
    folder.mkdir()
    pq.write_table(_table("a/b", 3), folder / "part-0.parquet")
    before = table_state(str(folder), "parquet")
    assert before["files"] == 1 and table_state(str(folder), "parquet") == before
    (folder / "notes.txt").write_text("ignored: not a table file\n")
    assert table_state(str(folder), "parquet") == before
    pq.write_table(_table("c/d", 2), folder / "part-1.parquet")  # a new file of rows
    grown = table_state(str(folder), "parquet")
    assert grown["files"] == 2 and grown["bytes"] > before["bytes"]
    assert table_state(str(folder / "*-1.parquet"), "parquet")["files"] == 1  # a glob

    lines = tmp_path / "rows.jsonl"
    lines.write_text(json.dumps({"repo_name": "a/b", "path": "x.py", "content": "x = 1\n"}) + "\n")
    one = table_state(str(lines), "jsonl")
    with lines.open("a") as fh:
        fh.write(json.dumps({"repo_name": "a/b", "path": "y.py", "content": "y = 2\n"}) + "\n")
    assert table_state(str(lines), "jsonl")["bytes"] > one["bytes"]
    with pytest.raises(ValueError, match="no parquet files"):
        table_state(str(tmp_path / "empty" / "*.parquet"), "parquet")


def test_python_env_names_and_versions():
    from importlib.metadata import version

    state = python_env_state(["PyYAML", "six", "no-such-distribution"])
    assert state["distributions"] == {"no-such-distribution": None, "pyyaml": version("pyyaml"), "six": version("six")}


def test_stack_v2_id_files_fingerprinted_like_parquet(tmp_path):
    params = pytest.importorskip("ray_tasks.ingest.params")
    if not hasattr(params, "StackV2Source"):
        pytest.skip("no stack_v2 source kind in this tree")
    pq.write_table(pa.table({"blob_id": ["b1"], "repo_name": ["a/b"], "path": ["x.py"]}), tmp_path / "ids.parquet")
    [entry] = fingerprint_sources([params.StackV2Source(path=str(tmp_path))])["sources"]
    assert entry["kind"] == "stack_v2" and entry["state"]["files"] == 1


def test_whole_fingerprint_is_deterministic_and_names_what_changed(tmp_path):
    root = _repos(tmp_path / "repos")
    sources = [PythonEnvSource(distributions=["six"]), DirectorySource(path=str(root)),
               TableSource(path=str(tmp_path / "t.parquet"))]
    pq.write_table(_table("a/b", 2), tmp_path / "t.parquet")
    a, b = fingerprint_sources(sources), fingerprint_sources(sources)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True) and changed_sources(a, b) == []
    (root / "repo0" / "pkg" / "extra.py").write_text("z = 3\n")
    [line] = changed_sources(a, fingerprint_sources(sources))
    assert line.startswith(f"directory {root}: 3 -> 4 files")
    assert all(line.endswith("not fingerprinted before") for line in changed_sources(None, a))
    assert changed_sources(a, fingerprint_sources(sources[:1] + sources[2:])) == [f"directory {root}: removed"]


def test_check_sources_rewrites_the_file_only_on_a_change(tmp_path, monkeypatch):
    from flows.sources import SOURCES_FILE, check_sources

    monkeypatch.chdir(tmp_path)
    root = _repos(tmp_path / "repos")
    params = parse_params({"ingest": {"sources": [{"kind": "directory", "path": "repos"}]}})
    first = check_sources(params)
    path = tmp_path / SOURCES_FILE
    assert json.loads(path.read_text())["digest"] == first["digest"]
    assert first["changed"] == ["directory repos: not fingerprinted before"]  # no dvc.lock yet
    mtime = path.stat().st_mtime_ns
    assert check_sources(params)["digest"] == first["digest"] and path.stat().st_mtime_ns == mtime
    (root / "repo9").mkdir()
    (root / "repo9" / "n.py").write_text("n = 9\n")
    assert check_sources(params)["digest"] != first["digest"]
    assert json.loads(path.read_text())["sources"][0]["state"]["files"] == 4


def test_pipeline_deployment_triggers_on_source_updated_in_code_and_prefect_yaml():
    deployments = {d.name: d for d in workspace_deployments(load_params(ROOT / "params.yaml"), ServeParams(cron=None))}
    [trigger] = deployments["pipeline"].triggers
    assert trigger.expect == {SOURCE_UPDATED} == {"starflow.source.updated"} and trigger.enabled
    assert trigger.parameters is None  # params.yaml as it is at run time, as the schedule
    assert all(not d.triggers for name, d in deployments.items() if name != "pipeline")

    infra = yaml.safe_load((ROOT / "infra" / "prefect.yaml").read_text())
    by_name = {d["name"]: d for d in infra["deployments"]}
    [declared] = by_name["pipeline"]["triggers"]
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

    parsed = DeploymentEventTrigger.model_validate({k: v for k, v in declared.items() if k != "type"})
    assert (parsed.expect, parsed.match, parsed.enabled, parsed.parameters) == (
        trigger.expect, trigger.match, trigger.enabled, trigger.parameters)
    assert all(not d.get("triggers") for name, d in by_name.items() if name != "pipeline")


def test_sources_stage_deps_cover_what_it_runs():
    """tests/test_dvc_deps.py's check, for the sources stage (its STAGES are the seven data stages)."""
    from tests.test_dvc_deps import code_deps, covered, stage_files

    files, deps = stage_files("sources"), code_deps("sources")
    assert "ray_tasks/ingest/fingerprint.py" in files
    assert sorted(f for f in files if not covered(f, deps)) == []
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert stage["sources"]["always_changed"] is True and stage["sources"]["outs"] == ["data/sources.json"]
    assert "data/sources.json" in stage["ingest"]["deps"] and list(stage)[:2] == ["sources", "ingest"]


def make_git_workspace(root: Path, env: dict[str, str]) -> tuple[Path, Path]:
    """A workspace whose one source is a local bare git repository, its DAG cut to sources + ingest
    (the stages a source change reaches first; the rest of the DAG is test_pipeline's): returns the
    workspace and the clone that pushes upstream."""
    from tests.workspaces import make_workspace

    bare, work = make_upstream(root)
    params = yaml.safe_load((ROOT / "params.tiny.yaml").read_text())
    params["ingest"]["sources"] = [{"kind": "git", "urls": [str(bare)]}]
    ws = root / "ws"
    ws.mkdir()
    make_workspace(ws, params, env)
    dag = yaml.safe_load((ws / "dvc.yaml").read_text())
    dag["stages"] = {name: stage for name, stage in dag["stages"].items() if name in ("sources", "ingest")}
    (ws / "dvc.yaml").write_text(yaml.safe_dump(dag, sort_keys=False))
    return ws, work


def test_a_checkout_of_a_committed_corpus_is_no_change(tmp_path):
    """A corpus committed with the workspace: a fresh checkout (new mtimes) fingerprints the same;
    an edit of a tracked file does change it."""
    main = tmp_path / "main"
    _repos(main / "corpus")
    _git(tmp_path, "init", "-q", str(main))
    _git(main, "add", "-A")
    _git(main, "commit", "-q", "-m", "corpus")
    before = directory_state(main / "corpus")
    _git(tmp_path, "clone", "-q", str(main), str(tmp_path / "copy"))
    for f in (tmp_path / "copy" / "corpus").rglob("*.py"):
        os.utime(f, ns=(0, 10**9))  # another checkout, other mtimes
    assert directory_state(tmp_path / "copy" / "corpus") == before
    (main / "corpus" / "repo0" / "pkg" / "m.py").write_text("x = 100\n")  # same size class, new content
    assert directory_state(main / "corpus") != before
