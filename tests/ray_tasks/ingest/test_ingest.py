import json
import random
import subprocess

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ray_tasks.ingest.params import IngestParams
from ray_tasks.ingest.sources import (
    SourceSkips, directory_repositories, python_env_repositories, repo_name_from_url, repositories,
)
from ray_tasks.ingest.stage import FILES_SCHEMA, ingest, ingest_stats, repos_table
from tests.conftest import GPL, MIT, make_corpus

DEFAULTS = IngestParams()


def _sources(*specs: dict):
    """``ingest.sources`` entries as the params validate them (what ``repositories`` takes)."""
    return IngestParams.model_validate({"sources": list(specs)}).sources


def test_directory_source_counts_every_skip(corpus):
    repos = list(directory_repositories(corpus, None))
    files, rejected = ingest(repos, IngestParams(max_file_bytes=4000))
    assert files.schema == FILES_SCHEMA
    reasons = {(r["path"], r["reason"]) for r in rejected.to_pylist()}
    assert ("blob.bin", "binary") in reasons
    assert ("minified.js", "too_large") in reasons  # 6 KB > the 4000-byte cap used here
    # Nothing is silently lost: every walked file is either kept or rejected.
    assert files.num_rows + rejected.num_rows == sum(len(r.files) for r in repos)
    lic = {r.name: r.license_type for r in repos}
    assert lic["repo1"] == "permissive" and lic["copyleft"] == "non_permissive"
    row = files.filter(pa.compute.equal(files["path"], "pkg/mod0.py")).to_pylist()[0]
    assert row["sha256"] and row["length_bytes"] == len(row["content"].encode())
    # Latin-1 is not UTF-8: decoded with a detected encoding, which is recorded.
    latin = files.filter(pa.compute.equal(files["path"], "latin1.py")).to_pylist()[0]
    assert latin["content"] == "café = 1\n" and latin["src_encoding"] not in ("UTF-8", None)
    stats = ingest_stats(repos_table(repos), files, rejected)
    assert stats["repositories"] == len(repos) and stats["files_seen"] == files.num_rows + rejected.num_rows
    assert stats["rejected_by_reason"]["binary"] >= 1 and stats["non_utf8_files"] >= 1
    assert sum(stats["repositories_by_license_type"].values()) == len(repos)


def test_undecodable_and_unreadable_files_are_named_skips(tmp_path):
    repo = tmp_path / "repos" / "r"
    repo.mkdir(parents=True)
    random.seed(0)
    (repo / "noise.py").write_bytes(bytes(random.randrange(1, 256) for _ in range(400)))
    (repo / "secret.py").write_text("x = 1\n")
    (repo / "secret.py").chmod(0o000)
    (repo / "ok.py").write_text("def f():\n    return 1\n")
    files, rejected = ingest(list(directory_repositories(tmp_path / "repos", None)), DEFAULTS)
    reasons = {r["path"]: r["reason"] for r in rejected.to_pylist()}
    assert reasons["noise.py"] == "undecodable"
    if subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() != "0":  # root reads anything
        assert reasons["secret.py"] == "unreadable"
    assert files.column("path").to_pylist()[0] == "ok.py"


def test_python_env_source_reads_real_distributions():
    repos = list(python_env_repositories(["six", "idna"], max_files=5))
    assert [r.name for r in repos] == ["pypi/idna", "pypi/six"]
    assert all(r.license_type == "permissive" for r in repos)
    # The dist-info license file was scanned by ScanCode, not just the metadata read.
    assert any(ids == ["MIT"] for ids in repos[1].licenses.files.values())
    files, _ = ingest(repos, DEFAULTS)
    assert set(files.column("repo_name").to_pylist()) == {"pypi/idna", "pypi/six"}
    assert any(p.endswith(".py") for p in files.column("path").to_pylist())


def test_vendored_license_applies_to_its_own_subtree():
    (pip,) = python_env_repositories(["pip"], max_files=None)
    assert pip.licenses.declared == ["MIT"]
    assert "MPL-2.0" in pip.licenses.detected_for("pip/_vendor/certifi/core.py")
    assert "MPL-2.0" not in pip.licenses.detected_for("pip/_internal/main.py")
    # The paper's quirk: a permissive declared (GitHub) license overrides vendored copyleft.
    assert pip.licenses.type_for("pip/_vendor/certifi/core.py") == "permissive"


def test_unknown_distribution_is_a_clear_error():
    with pytest.raises(ValueError, match="not installed"):
        list(repositories(_sources({"kind": "python_env", "distributions": ["no-such-dist-xyz"]})))
    with pytest.raises(ValueError, match="does not exist"):
        list(repositories(_sources({"kind": "directory", "path": "/no/such/dir"})))


def _git_repo(path, files: dict[str, str]):
    path.mkdir(parents=True)
    for rel, text in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text)
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e",
           "PATH": "/usr/bin:/bin"}
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "init"]):
        subprocess.run(["git", *cmd], cwd=path, check=True, env=env)


def test_git_source_shallow_clones_tracked_files(tmp_path):
    upstream = tmp_path / "upstream" / "tool"
    _git_repo(upstream, {"LICENSE": MIT, "tool/main.py": "def main():\n    return 0\n",
                         "vendor/lib/COPYING": GPL,
                         "vendor/lib/x.c": "int x;\n"})
    (upstream / "untracked.py").write_text("print(1)\n")  # not committed: not published code
    spec = {"kind": "git", "urls": [str(upstream)], "cache_dir": str(tmp_path / "cache")}
    (repo,) = list(repositories(_sources(spec)))
    assert repo.name == "tool" and repo.source == "git" and len(repo.meta["revision_id"]) == 40
    assert sorted(repo.files) == ["LICENSE", "tool/main.py", "vendor/lib/COPYING", "vendor/lib/x.c"]
    assert repo.licenses.type_for("tool/main.py") == "permissive"
    assert repo.licenses.type_for("vendor/lib/x.c") == "non_permissive"  # GPL only in its subtree
    # A second run refreshes the cached clone instead of failing on it.
    (repo2,) = list(repositories(_sources(spec)))
    assert repo2.meta["revision_id"] == repo.meta["revision_id"]
    with pytest.raises(ValueError, match="cannot clone"):
        list(repositories(_sources({"kind": "git", "urls": [str(tmp_path / "nope")], "cache_dir": str(tmp_path / "c2")})))
    assert repo_name_from_url("https://github.com/bigcode-project/starcoder2.git") == "bigcode-project/starcoder2"
    assert repo_name_from_url("git@github.com:owner/name.git") == "owner/name"


def _stack_rows():
    return [
        {"repo_name": "a/lib", "path": "/src/x.py", "content": "def x():\n    return 1\n", "star_events_count": 5,
         "fork_events_count": 1, "gha_license_id": "MIT", "src_encoding": "UTF-8", "language": "Python"},
        {"repo_name": "a/lib", "path": "/LICENSE", "content": MIT, "star_events_count": 5, "fork_events_count": 1,
         "gha_license_id": "MIT", "src_encoding": "UTF-8", "language": None},
        {"repo_name": "b/app", "path": "/app.js", "content": "function f() { return 1; }\n", "star_events_count": 0,
         "fork_events_count": 0, "gha_license_id": None, "src_encoding": "UTF-8", "language": None},
        {"repo_name": "b/app", "path": "/bin.dat", "content": "a\x00b", "star_events_count": 0,
         "fork_events_count": 0, "gha_license_id": None, "src_encoding": "UTF-8", "language": None},
    ]


def test_parquet_and_jsonl_sources_in_the_stack_v2_schema(tmp_path):
    pq.write_table(pa.Table.from_pylist(_stack_rows()), tmp_path / "part-0.parquet")
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in _stack_rows()))
    for spec in ({"kind": "parquet", "path": str(tmp_path / "part-0.parquet")},
                 {"kind": "jsonl", "path": str(tmp_path / "rows.jsonl")}):
        skips = SourceSkips()
        repos = list(repositories(_sources(spec), skips=skips))
        assert [r.name for r in repos] == ["a/lib", "b/app"]
        files, rejected = ingest(repos, DEFAULTS)
        by_path = {r["path"]: r for r in files.to_pylist()}
        assert by_path["/src/x.py"]["license_type"] == "permissive"  # gha_license_id honoured
        assert by_path["/src/x.py"]["star_events_count"] == 5 and by_path["/src/x.py"]["language"] == "Python"
        assert by_path["/app.js"]["license_type"] == "no_license"
        assert rejected.to_pylist()[0]["path"] == "/bin.dat" and rejected.to_pylist()[0]["reason"] == "binary"


def test_table_source_bad_inputs(tmp_path):
    good = tmp_path / "data"
    good.mkdir()
    pq.write_table(pa.Table.from_pylist(_stack_rows()), good / "a.parquet")
    (good / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    skips = SourceSkips()
    repos = list(repositories(_sources({"kind": "parquet", "path": str(good)}), skips=skips))
    files, rejected = ingest(repos, DEFAULTS, source_skips=skips.files)
    broken = [r for r in rejected.to_pylist() if r["reason"] == "unreadable_parquet"]
    assert len(broken) == 1 and broken[0]["path"].endswith("broken.parquet") and broken[0]["detail"]
    assert files.num_rows == 3
    # Missing columns: a clear error naming the file and what it has; a mapping fixes it.
    renamed = tmp_path / "other.parquet"
    pq.write_table(pa.table({"repo": ["r"], "file": ["f.py"], "text": ["x = 1\n"]}), renamed)
    with pytest.raises(ValueError, match=r"other\.parquet lacks column\(s\) \['repo_name', 'path', 'content'\]"):
        list(repositories(_sources({"kind": "parquet", "path": str(renamed)})))
    mapped = {"kind": "parquet", "path": str(renamed), "columns": {"repo_name": "repo", "path": "file", "content": "text"}}
    files, _ = ingest(list(repositories(_sources(mapped))), DEFAULTS)
    assert files.to_pylist()[0]["content"] == "x = 1\n"


def test_opt_out_drops_whole_repositories_with_a_counted_reason(tmp_path):
    root = make_corpus(tmp_path / "c", n_repos=3, files_per_repo=2)
    repos = list(directory_repositories(root, None))
    files, rejected = ingest(repos, IngestParams(opt_out=["REPO1", "copy*"]))
    assert not {"repo1", "copyleft"} & set(files.column("repo_name").to_pylist())
    opted = [r for r in rejected.to_pylist() if r["reason"] == "opt_out"]
    assert {r["repo_name"] for r in opted} == {"repo1", "copyleft"}
    assert len(opted) == sum(len(r.files) for r in repos if r.name in ("repo1", "copyleft"))


def test_a_file_that_vanishes_between_listing_and_reading_is_a_named_skip(tmp_path):
    from ray_tasks.ingest.licenses import RepoLicenses
    from ray_tasks.ingest.sources import Repository

    (tmp_path / "here.py").write_text("x = 1\n")
    repo = Repository("r", "directory", RepoLicenses(), files=["here.py", "gone.py"], root=tmp_path)
    files, rejected = ingest([repo], DEFAULTS)
    assert files.column("path").to_pylist() == ["here.py"]
    (row,) = rejected.to_pylist()
    assert row["path"] == "gone.py" and row["reason"] == "unreadable" and "No such file" in row["detail"]


def test_huge_files_are_skipped_without_being_read(tmp_path):
    repo = tmp_path / "repos" / "big"
    repo.mkdir(parents=True)
    with open(repo / "huge.json", "wb") as fh:  # sparse: 10 MiB on paper, no disk used
        fh.truncate(10 * 1024 * 1024)
    (repo / "small.py").write_text("y = 2\n")
    files, rejected = ingest(list(directory_repositories(tmp_path / "repos", None)), IngestParams(max_file_bytes=10 * 1024 * 1024))
    assert rejected.to_pylist()[0]["reason"] == "too_large" and rejected.to_pylist()[0]["length_bytes"] == 10 * 1024 * 1024
    assert files.column("path").to_pylist() == ["small.py"]
