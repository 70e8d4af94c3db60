"""Datasets and table sources at s3:// URIs, on a local S3 server (moto; never the internet)."""

from __future__ import annotations

import gzip
import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ray_tasks import datasets as ds
from ray_tasks.ingest.params import IngestParams
from ray_tasks.ingest.sources import SourceSkips, repositories
from ray_tasks.ingest.stage import ingest
from ray_tasks.tables import read_table
from tests.s3server import s3  # noqa: F401  (the fixture)

SCHEMA = pa.schema([("repo_name", pa.string()), ("path", pa.string()), ("content", pa.string()),
                    ("length_bytes", pa.int64()), ("sha256", pa.string())])


def _rows(start: int, n: int) -> pa.Table:
    content = [f"y = {i}\n" * (1 + i % 5) for i in range(start, start + n)]
    return pa.table({"repo_name": [f"o/r{i // 10}" for i in range(start, start + n)],
                     "path": [f"f{i}.py" for i in range(start, start + n)], "content": content,
                     "length_bytes": [len(c) for c in content],
                     "sha256": [hashlib.sha256(c.encode()).hexdigest() for c in content]}, schema=SCHEMA)


def _keys(s3, bucket: str, prefix: str) -> list[str]:
    """Object keys under ``prefix``, less the empty ``folder/`` markers pyarrow's ``create_dir`` puts."""
    listed = s3.client().list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return sorted(o["Key"] for o in listed if not (o["Key"].endswith("/") and o["Size"] == 0))


def test_partitioned_dataset_written_and_read_at_an_s3_uri(s3):
    s3.create_bucket("lake")
    root = "s3://lake/runs/1/ingest/files"
    batches = [_rows(i * 20, 20) for i in range(3)]
    with ds.PartWriter(root, SCHEMA, part_bytes=1500) as writer:
        for b in batches:
            writer.write(b)
    whole = pa.concat_tables(batches)
    manifest = ds.read_manifest(root)
    assert len(manifest.parts) >= 2 and manifest.num_rows == whole.num_rows
    # Only complete objects: the parts the manifest lists and the manifest, nothing temporary.
    assert _keys(s3, "lake", "runs/1/ingest/files/") == sorted(
        [f"runs/1/ingest/files/{p.name}" for p in manifest.parts] + ["runs/1/ingest/files/_manifest.json"])
    assert ds.is_dataset(root) and ds.part_paths(root)[0] == f"{root}/part-00000.parquet"
    assert ds.read_dataset(root).equals(whole)
    assert read_table(root).equals(whole)
    assert pa.concat_tables(ds.iter_tables(root, columns=["path"])).column("path").equals(whole.column("path"))
    for info, uri in zip(manifest.parts, ds.part_paths(root)):  # recorded sizes and digests are the objects'
        data = s3.client().get_object(Bucket="lake", Key=uri.removeprefix("s3://lake/"))["Body"].read()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (info.bytes, info.sha256)


def test_workers_parts_then_the_manifest_and_an_incomplete_dataset_refused(s3):
    s3.create_bucket("lake")
    root = "s3://lake/dedup/files"
    infos = [ds.write_part(root, i, _rows(i * 10, 10)) for i in (1, 0, 2)]  # workers finish in any order
    assert not ds.is_dataset(root)
    with pytest.raises(FileNotFoundError, match="not a complete dataset"):
        ds.read_manifest(root)
    ds.write_part(root, 7, _rows(500, 3))  # a stale part from a longer earlier write
    ds.write_manifest(root, sorted(infos, key=lambda p: p.name), SCHEMA)
    assert ds.read_dataset(root).equals(pa.concat_tables([_rows(0, 10), _rows(10, 10), _rows(20, 10)]))
    assert "dedup/files/part-00007.parquet" not in _keys(s3, "lake", "dedup/files/")  # pruned


def test_read_table_refuses_an_incomplete_dataset_at_an_s3_uri(s3):
    s3.create_bucket("lake")
    ds.write_part("s3://lake/half/files", 0, _rows(0, 10))  # no manifest yet: incomplete
    with pytest.raises(ValueError, match="not a complete dataset"):
        read_table("s3://lake/half/files")


def test_stack_v2_id_files_and_a_parquet_source_read_from_s3(s3, tmp_path):
    s3.create_bucket("softwareheritage", public=True)
    s3.create_bucket("ids")
    ids = []
    for i in range(6):
        blob = f"{i:040x}"
        s3.put("softwareheritage", f"content/{blob}", gzip.compress(f"v = {i}\n".encode()))
        ids.append({"blob_id": blob, "repo_name": f"o/r{i % 2}", "path": f"/m{i}.py", "src_encoding": "UTF-8",
                    "license_type": "permissive", "detected_licenses": ["MIT"], "length_bytes": 6})
    local = tmp_path / "ids"
    local.mkdir()
    for n in range(2):  # two id files, as the release ships many
        part = pa.Table.from_pylist(ids[n * 3:(n + 1) * 3])
        pq.write_table(part, local / f"train-{n:05d}.parquet", row_group_size=2)
        s3.put("ids", f"release/data/Python/train-{n:05d}.parquet", (local / f"train-{n:05d}.parquet").read_bytes())
    s3.put("ids", "release/README.md", b"not an id file")

    def run(path: str) -> pa.Table:
        spec = {"kind": "stack_v2", "path": path, "endpoint_url": s3.proxy_url, "cache_dir": None}
        cfg = IngestParams.model_validate({"sources": [spec]})
        skips = SourceSkips()
        files, rejected = ingest(list(repositories(cfg.sources, skips=skips)), cfg, skips.files)
        assert rejected.num_rows == 0
        return files

    by_local = run(str(local))
    assert sorted(by_local.column("content").to_pylist()) == sorted(f"v = {i}\n" for i in range(6))
    for uri in ("s3://ids/release/", "s3://ids/release/data/*/train-*.parquet"):  # a folder (README left out), a glob
        assert run(uri).equals(by_local), uri
    with pytest.raises(ValueError, match=r"no parquet files at s3://ids/nothing/\*\.parquet"):
        list(repositories(IngestParams.model_validate(
            {"sources": [{"kind": "stack_v2", "path": "s3://ids/nothing/*.parquet"}]}).sources))

    # The plain parquet source (rows with content) reads s3:// the same way.
    s3.put("ids", "content-rows/t.parquet", _parquet_bytes(_rows(0, 12), tmp_path))
    cfg = IngestParams.model_validate({"sources": [{"kind": "parquet", "path": "s3://ids/content-rows/"}]})
    files, _ = ingest(list(repositories(cfg.sources)), cfg)
    assert files.column("content").to_pylist() == _rows(0, 12).column("content").to_pylist()
    # And JSONL, compressed or not, by its name.
    lines = "\n".join(json.dumps(r) for r in _rows(0, 12).to_pylist()).encode()
    s3.put("ids", "jsonl/a.jsonl.gz", gzip.compress(lines))
    cfg = IngestParams.model_validate({"sources": [{"kind": "jsonl", "path": "s3://ids/jsonl/"}]})
    by_jsonl, _ = ingest(list(repositories(cfg.sources)), cfg)
    assert by_jsonl.drop_columns("source").equals(files.drop_columns("source"))


def _parquet_bytes(table: pa.Table, tmp_path) -> bytes:
    path = tmp_path / "rows.parquet"
    pq.write_table(table, path)
    return path.read_bytes()
