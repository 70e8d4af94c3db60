"""The Stack v2 source: id files + gzip blobs on a local S3 server (moto), ingested by the stage."""

import gzip
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ray_tasks.ingest import stack_v2
from ray_tasks.ingest.params import IngestParams
from ray_tasks.ingest.sources import SourceSkips, repositories
from ray_tasks.ingest.stack_v2 import BadGzip, TooLarge, Undecodable, decode_as, gunzip
from ray_tasks.ingest.stage import ingest_to
from tests.s3server import s3  # noqa: F401  (the fixture)

BUCKET = "softwareheritage"


def blob_id(n: int) -> str:
    return f"{n:040x}"


# (repo, path, bytes stored (gzip unless noted), src_encoding, license_type, detected_licenses, language, stars)
LATIN = "café = 'naïve'\n"
UTF16 = "# ünïcode\nx = 1\n"
FILES = [
    ("a/lib", "/src/x.py", gzip.compress(b"def f():\n    return 1\n"), "UTF-8", "permissive", ["MIT"], "Python", 5),
    ("a/lib", "/src/latin.py", gzip.compress(LATIN.encode("cp1252")), "windows-1252", "permissive", ["MIT"], "Python", 5),
    ("a/lib", "/doc/notes.py", gzip.compress(UTF16.encode("utf-16-le")), "UTF-16LE", "permissive", ["MIT"], "Python", 5),
    ("a/lib", "/src/two_members.py", gzip.compress(b"a = 1\n") + gzip.compress(b"b = 2\n"), "UTF-8", "permissive", ["MIT"], "Python", 5),
    ("b/app", "/app.js", gzip.compress(b"console.log(1);\n"), "UTF-8", "no_license", [], "JavaScript", 0),
    ("b/app", "/missing.js", None, "UTF-8", "no_license", [], "JavaScript", 0),
    ("b/app", "/broken.js", b"this is not gzip at all", "UTF-8", "no_license", [], "JavaScript", 0),
    ("b/app", "/cut.js", gzip.compress(b"var x = 1;\n" * 50)[:30], "UTF-8", "no_license", [], "JavaScript", 0),
    ("b/app", "/bad.py", gzip.compress(b"x = '\xff\xfe\xfa'\n"), "UTF-8", "no_license", [], "Python", 0),
    ("b/app", "/odd.py", gzip.compress(b"y = 2\n"), "X-NO-SUCH-CODEC", "no_license", [], "Python", 0),
    ("b/app", "/huge.json", gzip.compress(b"[]"), "UTF-8", "no_license", [], "JSON", 0),
    ("c/plain", "/main.go", gzip.compress("package main // é\n".encode("latin-1")), None, "no_license", [], "Go", 1),
]
HUGE = 10 * 1024 * 1024  # /huge.json's length_bytes: never fetched under the default cap


def _release(s3, root: Path, files=FILES, row_group_size: int = 4, name: str = "ids.parquet") -> Path:
    """Id files (the release's columns, no content) in ``root``, contents in the local bucket."""
    s3.create_bucket(BUCKET, public=True)
    rows = []
    for i, (repo, path, stored, enc, lic, detected, lang, stars) in enumerate(files):
        if stored is not None:
            s3.put(BUCKET, f"content/{blob_id(i)}", stored)
        rows.append({"blob_id": blob_id(i), "directory_id": "d" * 40, "path": path, "content_id": "c" * 40,
                     "detected_licenses": detected, "license_type": lic, "repo_name": repo,
                     "revision_id": "r" * 40, "branch_name": "refs/heads/main", "star_events_count": stars,
                     "fork_events_count": 0, "gha_license_id": "MIT" if repo == "a/lib" else None,
                     "src_encoding": enc, "language": lang, "is_vendor": False, "is_generated": False,
                     "length_bytes": HUGE if path == "/huge.json" else 100, "extension": path.rsplit(".", 1)[-1]})
    root.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows)
    table = table.append_column("visit_date", pa.array([None] * len(rows), pa.timestamp("ns")))
    pq.write_table(table, root / name, row_group_size=row_group_size)
    return root / name


def _params(path, endpoint: str, tmp_path: Path, **kw) -> IngestParams:
    source = {"kind": "stack_v2", "path": str(path), "endpoint_url": endpoint, "backoff_s": 0.01,
              "cache_dir": str(tmp_path / "cache"), **kw}
    return IngestParams.model_validate({"sources": [source]})


def _run(cfg: IngestParams, out: Path, use_ray: bool = False, work_dir: Path | None = None) -> tuple[dict, dict[str, pa.Table]]:
    """The stage's own entry: sources listed, then ``ingest_to`` (what ``flows/ingest.py`` runs)."""
    from ray_tasks.tables import read_table

    skips = SourceSkips()
    repos = list(repositories(cfg.sources, skips=skips))
    out.mkdir(parents=True, exist_ok=True)
    stats = ingest_to(out, repos, cfg, use_ray, source_skips=skips.files, work_dir=work_dir)
    tables = {}
    for name in ("files", "rejected"):  # a dataset folder or one file, whichever the stage writes
        tables[name] = read_table(out / name if (out / name).exists() else out / f"{name}.parquet", required=())
    return stats, tables


def test_release_ids_are_fetched_decoded_and_every_failure_is_a_named_count(s3, tmp_path):
    ids = _release(s3, tmp_path / "ids")
    stats, out = _run(_params(ids, s3.proxy_url, tmp_path), tmp_path / "out")
    files = {r["path"]: r for r in out["files"].to_pylist()}
    assert files["/src/x.py"]["content"] == "def f():\n    return 1\n"
    assert files["/src/latin.py"]["content"] == LATIN and files["/src/latin.py"]["src_encoding"] == "windows-1252"
    assert files["/doc/notes.py"]["content"] == UTF16 and files["/doc/notes.py"]["src_encoding"] == "UTF-16LE"
    assert files["/src/two_members.py"]["content"] == "a = 1\nb = 2\n"
    # No src_encoding in the row: the bytes are decoded like any file's, and the encoding found is recorded.
    assert files["/main.go"]["content"] == "package main // é\n" and files["/main.go"]["src_encoding"] != "UTF-8"
    # The release's metadata, as given: licenses per file, language, stars, the repository's declared license.
    x = files["/src/x.py"]
    assert (x["license_type"], x["detected_licenses"], x["language"], x["star_events_count"]) == ("permissive", ["MIT"], "Python", 5)
    assert (files["/app.js"]["license_type"], files["/app.js"]["detected_licenses"]) == ("no_license", [])
    assert x["source"] == "stack_v2" and x["revision_id"] == "r" * 40 and x["length_bytes"] == 22
    rejected = {r["path"]: r for r in out["rejected"].to_pylist()}
    assert {p: r["reason"] for p, r in rejected.items()} == {
        "/missing.js": "missing_blob", "/broken.js": "bad_gzip", "/cut.js": "bad_gzip",
        "/bad.py": "undecodable", "/odd.py": "undecodable", "/huge.json": "too_large"}
    assert f"s3://{BUCKET}/content/{blob_id(5)}" in rejected["/missing.js"]["detail"]  # the file is named
    assert "X-NO-SUCH-CODEC" in rejected["/odd.py"]["detail"] and "UTF-8" in rejected["/bad.py"]["detail"]
    assert all(r["repo_name"] == "b/app" for r in rejected.values())
    assert stats["rejected_by_reason"] == {"bad_gzip": 2, "missing_blob": 1, "too_large": 1, "undecodable": 2}
    assert stats["files_seen"] == len(FILES) == stats["files_kept"] + stats["files_rejected"]  # nothing lost
    assert stats["repositories"] == 3
    assert s3.count("GET", f"/{BUCKET}/content/{blob_id(10)}") == 0  # over the size cap: never fetched


def test_second_run_fetches_nothing_the_cache_has(s3, tmp_path):
    ids = _release(s3, tmp_path / "ids")
    cfg = _params(ids, s3.proxy_url, tmp_path)
    _, first = _run(cfg, tmp_path / "one")
    fetched = s3.count("GET", f"/{BUCKET}/content/")
    assert fetched == len(FILES) - 1  # every file but the oversized one, once
    cached = sorted(p.name for p in (tmp_path / "cache").rglob("*") if p.is_file())
    # Only contents that decompressed are cached (a bad gzip or a missing blob is asked again next run).
    assert cached == sorted(blob_id(i) for i, f in enumerate(FILES) if f[1] not in ("/missing.js", "/broken.js", "/cut.js", "/huge.json"))
    hits = stack_v2.COUNTS["cache_hits"]
    _, second = _run(cfg, tmp_path / "two")
    assert s3.count("GET", f"/{BUCKET}/content/") - fetched == 3  # the three failures only
    assert stack_v2.COUNTS["cache_hits"] - hits == len(cached)
    assert second["files"].equals(first["files"]) and second["rejected"].equals(first["rejected"])
    # A damaged cache file fails its gzip check, is dropped and fetched again.
    (tmp_path / "cache" / blob_id(0)[:2] / blob_id(0)).write_bytes(b"garbage")
    _, third = _run(cfg, tmp_path / "three")
    assert third["files"].equals(first["files"])
    assert s3.count("GET", f"/{BUCKET}/content/{blob_id(0)}") == 2


def test_throttling_dropped_connections_and_cut_bodies_are_retried(s3, tmp_path):
    ids = _release(s3, tmp_path / "ids", files=FILES[:4])
    s3.fail(f"content/{blob_id(0)}", times=3, kind="503")  # SlowDown x3, then served
    s3.fail(f"content/{blob_id(1)}", times=1, kind="drop")  # connection closed without a response
    s3.fail(f"content/{blob_id(2)}", times=2, kind="truncate")  # headers, half the body, closed
    s3.fail(f"content/{blob_id(3)}", times=99, kind="500")  # never recovers
    cfg = _params(ids, s3.proxy_url, tmp_path, max_attempts=4, cache_dir=None, fetch_failures="reject")
    stats, out = _run(cfg, tmp_path / "out")
    got = {r["path"]: r["content"] for r in out["files"].to_pylist()}
    assert got == {"/src/x.py": "def f():\n    return 1\n", "/src/latin.py": LATIN, "/doc/notes.py": UTF16}
    counts = [s3.count("GET", f"/{BUCKET}/content/{blob_id(i)}") for i in range(4)]
    assert counts == [4, 2, 3, 4]  # tries until success; the last one gives up after max_attempts
    (failed,) = out["rejected"].to_pylist()
    assert failed["reason"] == "fetch_failed" and "InternalError (HTTP 500) after 4 tries" in failed["detail"]
    assert stats["rejected_by_reason"] == {"fetch_failed": 1}
    # By default a fetch that fails for good stops the stage (a transient outage is not a property of the data).
    with pytest.raises(stack_v2.FetchFailed, match=rf"1 of 4 contents of a/lib .*/src/two_members.py: .*{blob_id(3)}: InternalError \(HTTP 500\) after 2 tries"):
        _run(_params(ids, s3.proxy_url, tmp_path, max_attempts=2, cache_dir=None), tmp_path / "out2")


def test_a_repository_with_failed_fetches_is_not_kept_the_next_run_redoes_it_alone(s3, tmp_path):
    import json

    from ray_tasks.ingest.stage import LAST_RUN

    ids = _release(s3, tmp_path / "ids")
    s3.fail(f"content/{blob_id(0)}", times=2, kind="500")  # a/lib's /src/x.py: both tries of the first run
    cfg = _params(ids, s3.proxy_url, tmp_path, max_attempts=2, cache_dir=None, fetch_failures="reject")
    work = tmp_path / "work"
    stats, _ = _run(cfg, tmp_path / "one", work_dir=work)
    assert stats["rejected_by_reason"]["fetch_failed"] == 1
    _run(cfg, tmp_path / "two", work_dir=work)  # the blob is served now
    counts = json.loads((work / LAST_RUN).read_text())
    assert (counts["repositories_computed"], counts["repositories_reused"], counts["groups_reused"]) == (1, 2, 0)
    assert counts["bytes_read"] == 400  # a/lib's files only
    _run(cfg, tmp_path / "cold")
    output = ("files/part-00000.parquet", "files/_manifest.json", "rejected.parquet", "repos.parquet")
    assert [(tmp_path / "two" / f).read_bytes() == (tmp_path / "cold" / f).read_bytes() for f in output] == [True] * 4
    _run(cfg, tmp_path / "three", work_dir=work)  # nothing failed last time: the group is kept whole
    assert json.loads((work / LAST_RUN).read_text())["groups_reused"] == 1


def test_an_unreachable_endpoint_stops_the_stage_or_is_counted_never_hangs(s3, tmp_path):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    ids = _release(s3, tmp_path / "ids", files=FILES[:2])
    with pytest.raises(stack_v2.FetchFailed, match="2 of 2 contents of a/lib .*EndpointConnectionError.* after 3 tries"):
        _run(_params(ids, closed, tmp_path, max_attempts=3, cache_dir=None), tmp_path / "out")
    stats, out = _run(_params(ids, closed, tmp_path, max_attempts=3, cache_dir=None, fetch_failures="reject"),
                      tmp_path / "out2")
    assert out["files"].num_rows == 0 and stats["rejected_by_reason"] == {"fetch_failed": 2}
    assert "EndpointConnectionError" in out["rejected"].column("detail")[0].as_py()


def test_listing_reads_ids_only_and_sizes_groups_by_content_bytes(s3, tmp_path):
    ids = _release(s3, tmp_path / "ids", row_group_size=3)
    cfg = _params(ids, s3.proxy_url, tmp_path)
    repos = list(repositories(cfg.sources))
    assert [r.name for r in repos] == ["a/lib", "b/app", "c/plain"]
    assert all(r.rows is None and r.row_groups.blobs is not None for r in repos)  # nothing read but the listing
    assert [r.size_hint for r in repos] == [400, 600 + HUGE, 100]  # length_bytes, not id-file bytes
    assert s3.count("GET", f"/{BUCKET}/") == 0


def test_the_per_repository_layout_of_the_train_ids_sets_gives_the_same_rows(s3, tmp_path):
    flat_ids = _release(s3, tmp_path / "flat")
    flat = pq.read_table(flat_ids).to_pylist()
    repos: dict[str, dict] = {}
    file_keys = ("blob_id", "path", "content_id", "language", "length_bytes", "detected_licenses", "license_type",
                 "src_encoding", "is_vendor", "is_generated")
    for row in flat:  # train-smol-ids: one row per repository, its files in a list
        repo = repos.setdefault(row["repo_name"], {
            "repo_name": row["repo_name"], "revision_id": row["revision_id"], "branch_name": row["branch_name"],
            "star_events_count": row["star_events_count"], "fork_events_count": 0,
            "gha_license_id": row["gha_license_id"], "gha_language": None, "files": []})
        repo["files"].append({k: row[k] for k in file_keys} | {"alphanum_fraction": 0.5, "num_lines": 1})
    nested = pa.Table.from_pylist(list(repos.values()))
    nested = nested.append_column("visit_date", pa.array([None] * nested.num_rows, pa.timestamp("ns")))
    (tmp_path / "nested").mkdir()
    pq.write_table(nested, tmp_path / "nested" / "train.parquet", row_group_size=2)
    by_flat = _params(flat_ids, s3.proxy_url, tmp_path)
    by_nested = _params(tmp_path / "nested", s3.proxy_url, tmp_path)
    listed = list(repositories(by_nested.sources))
    assert [(r.name, r.size_hint) for r in listed] == [(r.name, r.size_hint) for r in repositories(by_flat.sources)]
    stats_flat, flat_out = _run(by_flat, tmp_path / "out_flat")
    stats_nested, nested_out = _run(by_nested, tmp_path / "out_nested")
    assert nested_out["files"].equals(flat_out["files"]) and nested_out["rejected"].equals(flat_out["rejected"])
    assert stats_nested == stats_flat
    broken = pa.table({"repo_name": ["o/r"], "files": [[{"path": "/a.py", "sha": "x"}]]})
    pq.write_table(broken, tmp_path / "broken.parquet")
    with pytest.raises(ValueError, match=r"broken\.parquet: the entries of its `files` column lack \['blob_id'\]"):
        list(repositories(_params(tmp_path / "broken.parquet", s3.proxy_url, tmp_path).sources))


def test_renamed_columns_and_a_missing_id_column(s3, tmp_path):
    s3.create_bucket(BUCKET, public=True)
    s3.put(BUCKET, f"content/{blob_id(1)}", gzip.compress(b"x = 1\n"))
    renamed = tmp_path / "renamed.parquet"
    pq.write_table(pa.table({"repo": ["o/r"], "path": ["/a.py"], "sha1": [blob_id(1)], "src_encoding": ["UTF-8"]}), renamed)
    with pytest.raises(ValueError, match=r"renamed\.parquet lacks column\(s\) \['repo_name', 'blob_id'\]"):
        list(repositories(_params(renamed, s3.proxy_url, tmp_path).sources))
    cfg = _params(renamed, s3.proxy_url, tmp_path, columns={"repo_name": "repo", "blob_id": "sha1"})
    _, out = _run(cfg, tmp_path / "out")
    assert out["files"].select(["repo_name", "path", "content"]).to_pylist() == [
        {"repo_name": "o/r", "path": "/a.py", "content": "x = 1\n"}]


def test_opted_out_repositories_are_never_fetched(s3, tmp_path):
    ids = _release(s3, tmp_path / "ids")
    cfg = _params(ids, s3.proxy_url, tmp_path).model_copy(update={"opt_out": ["b/*"]})
    stats, _ = _run(cfg, tmp_path / "out")
    assert stats["rejected_by_reason"] == {"opt_out": 7}
    assert s3.count("GET", f"/{BUCKET}/content/") == 5  # a/lib's four and c/plain's one


@pytest.mark.slow  # ~10 s: Ray workers' first imports of boto3 and the ingest modules
def test_on_ray_the_same_rows(s3, tmp_path, ray_session):
    ids = _release(s3, tmp_path / "ids")
    cfg = _params(ids, s3.proxy_url, tmp_path, cache_dir=None).model_copy(update={"batch_bytes": 300, "max_in_flight": 2})
    _, local = _run(cfg, tmp_path / "local")
    _, on_ray = _run(cfg, tmp_path / "ray", use_ray=True)
    assert on_ray["files"].equals(local["files"]) and on_ray["rejected"].equals(local["rejected"])


def test_gunzip_is_bounded_and_strict():
    assert gunzip(gzip.compress(b"x" * 100), 101) == b"x" * 100
    with pytest.raises(TooLarge):
        gunzip(gzip.compress(b"x" * 100), 100)  # reaches the cap (files of max_file_bytes or more are skipped)
    with pytest.raises(TooLarge):
        gunzip(gzip.compress(b"\0" * (50 << 20)), 1 << 20)  # a 50 MB bomb stops at 1 MB
    for bad in (b"", b"plain text", gzip.compress(b"abc" * 100)[:-5], gzip.compress(b"a") + b"trailing"):
        with pytest.raises(BadGzip):
            gunzip(bad, 1 << 20)


def test_decode_as_the_release_names_its_encodings():
    assert decode_as("žluťoučký".encode("cp1250"), "windows-1250") == "žluťoučký"
    assert decode_as("日本".encode("shift_jis"), "SHIFT_JIS") == "日本"
    with pytest.raises(Undecodable, match="unknown encoding"):
        decode_as(b"x", "EUC-TW-NOT-A-CODEC")
    with pytest.raises(Undecodable, match="not valid UTF-8 at byte 1"):
        decode_as(b"a\xffb", "UTF-8")


def test_retry_delays_grow_exponentially_and_are_capped():
    store = stack_v2.BlobStore("b", "content/", None, "us-east-1", True, 4, 5, 0.5, 3.0, 5.0, None, "stop")
    for retry, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 3.0), (9, 3.0)]:
        delays = [store.delay(retry) for _ in range(200)]
        assert 0 <= min(delays) and max(delays) <= ceiling and max(delays) > ceiling / 2


def test_fetches_overlap_up_to_concurrency_and_never_more(s3, tmp_path):
    many = [("o/big", f"/m{i:02d}.py", gzip.compress(f"n = {i}\n".encode()), "UTF-8", "permissive", [], "Python", 0)
            for i in range(12)]
    ids = _release(s3, tmp_path / "ids", files=many)
    s3.delay_s = 0.2  # each GET takes 0.2 s: requests that can overlap do
    _, out = _run(_params(ids, s3.proxy_url, tmp_path, concurrency=3, cache_dir=None), tmp_path / "out")
    assert out["files"].num_rows == 12 and s3.count("GET", f"/{BUCKET}/content/") == 12
    assert s3.max_in_flight == 3


def test_a_refused_request_is_not_retried_and_stops_the_stage(s3, tmp_path):
    s3.create_bucket("private")  # no public policy: unsigned requests are refused (403)
    s3.put("private", f"content/{blob_id(0)}", gzip.compress(b"x = 1\n"))
    ids = _release(s3, tmp_path / "ids", files=FILES[:1])
    with pytest.raises(stack_v2.FetchFailed, match=r"s3://private/content/0+: (AccessDenied \()?HTTP 403\)?$"):
        _run(_params(ids, s3.proxy_url, tmp_path, bucket="private"), tmp_path / "out")
    assert s3.count("GET", f"/private/content/{blob_id(0)}") == 1
    _, out = _run(_params(ids, s3.proxy_url, tmp_path, bucket="private", unsigned=False), tmp_path / "signed")
    assert out["files"].column("content").to_pylist() == ["x = 1\n"]  # signed with the (test) credentials


def test_a_group_of_small_repositories_is_fetched_in_one_pool(s3, tmp_path):
    from ray_tasks.ingest.sources import load_rows
    from ray_tasks.ingest.stage import ingest

    small = [(f"o/r{i // 2:02d}", f"/m{i}.py", gzip.compress(f"n = {i}\n".encode()), "UTF-8", "permissive", [], "Python", 0)
             for i in range(16)]  # eight repositories of two files
    ids = _release(s3, tmp_path / "ids", files=small)
    cfg = _params(ids, s3.proxy_url, tmp_path, concurrency=6, cache_dir=None).model_copy(update={"opt_out": ["o/r07"]})
    s3.delay_s = 0.1  # each GET takes 0.1 s: requests that can overlap do
    per_repository = ingest(list(repositories(cfg.sources)), cfg)  # the stage's group task: one pool
    assert s3.max_in_flight == 6
    s3.reset_counts()
    prefetched = load_rows(list(repositories(cfg.sources)), cfg.max_file_bytes, cfg.opt_out)
    assert s3.max_in_flight == 6 and s3.count("GET", f"/{BUCKET}/content/") == 14  # not the opted-out repository's
    by_group = ingest(prefetched, cfg)
    assert by_group[0].equals(per_repository[0]) and by_group[1].equals(per_repository[1])
    assert s3.count("GET", f"/{BUCKET}/content/") == 14  # read_files found everything fetched


def test_without_an_endpoint_the_environments_is_used_as_boto3_does(s3, tmp_path):
    ids = _release(s3, tmp_path / "ids", files=FILES[:1])
    cfg = IngestParams.model_validate({"sources": [{"kind": "stack_v2", "path": str(ids), "cache_dir": None}]})
    assert cfg.sources[0].endpoint_url is None and cfg.sources[0].bucket == BUCKET  # the real bucket's name
    _, out = _run(cfg, tmp_path / "out")  # AWS_ENDPOINT_URL (the fixture's) is moto itself, not the proxy
    assert out["files"].column("content").to_pylist() == ["def f():\n    return 1\n"]
    assert s3.count("GET", "/") == 0
