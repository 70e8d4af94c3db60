import pyarrow as pa

from ray_tasks.ingest import FILES_SCHEMA, ingest
from ray_tasks.sources import directory_repositories, python_env_repositories, repositories


def test_directory_source_counts_every_skip(corpus):
    repos = list(directory_repositories(corpus, None))
    files, rejected = ingest(repos, max_file_bytes=4000)
    assert files.schema == FILES_SCHEMA
    reasons = {(r["path"], r["reason"]) for r in rejected.to_pylist()}
    assert ("blob.bin", "binary") in reasons
    assert ("latin1.py", "undecodable") in reasons
    assert ("minified.js", "too_large") in reasons  # 6 KB > the 4000-byte cap used here
    # Nothing is silently lost: every walked file is either kept or rejected.
    assert files.num_rows + rejected.num_rows == sum(len(r.files) for r in repos)
    lic = {r.name: r.license_type for r in repos}
    assert lic["repo1"] == "permissive" and lic["copyleft"] == "non_permissive"
    row = files.filter(pa.compute.equal(files["path"], "pkg/mod0.py")).to_pylist()[0]
    assert row["sha256"] and row["length_bytes"] == len(row["content"].encode())


def test_python_env_source_reads_real_distributions():
    repos = list(python_env_repositories(["six", "idna"], max_files=5))
    assert [r.name for r in repos] == ["pypi/idna", "pypi/six"]
    assert all(r.license_type == "permissive" for r in repos)
    files, _ = ingest(repos, 10 * 2**20)
    assert set(files.column("repo_name").to_pylist()) == {"pypi/idna", "pypi/six"}
    assert any(p.endswith(".py") for p in files.column("path").to_pylist())


def test_unknown_distribution_is_a_clear_error():
    import pytest

    with pytest.raises(ValueError, match="not installed"):
        list(repositories([{"kind": "python_env", "distributions": ["no-such-dist-xyz"]}]))
    with pytest.raises(ValueError, match="does not exist"):
        list(repositories([{"kind": "directory", "path": "/no/such/dir"}]))
