"""The partitioned dataset format (ray_tasks/datasets.py) on local folders; fast, no Ray."""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ray_tasks import datasets as ds
from ray_tasks.tables import read_table

SCHEMA = pa.schema([("repo_name", pa.string()), ("path", pa.string()), ("content", pa.string()),
                    ("length_bytes", pa.int64()), ("sha256", pa.string())])


def _rows(start: int, n: int) -> pa.Table:
    content = [f"x = {i}\n" * (1 + i % 7) for i in range(start, start + n)]
    return pa.table(
        {
            "repo_name": [f"o/r{i // 10}" for i in range(start, start + n)],
            "path": [f"f{i}.py" for i in range(start, start + n)],
            "content": content,
            "length_bytes": [len(c) for c in content],
            "sha256": [hashlib.sha256(c.encode()).hexdigest() for c in content],
        },
        schema=SCHEMA,
    )


def test_part_writer_cuts_bounded_parts_and_reads_back_in_order(tmp_path):
    root = tmp_path / "files"
    w = ds.PartWriter(root, SCHEMA, part_bytes=2000)
    batches = [_rows(i * 20, 20) for i in range(10)]
    for b in batches:
        w.write(b)
    manifest = w.close()
    whole = pa.concat_tables(batches)
    assert len(manifest.parts) > 2
    assert manifest.num_rows == whole.num_rows == sum(p.rows for p in manifest.parts)
    assert ds.read_dataset(root).equals(whole)
    assert pq.read_table(root).equals(whole)  # pyarrow ignores _manifest.json and reads part order
    assert read_table(root).equals(whole)
    assert pa.concat_tables(ds.iter_tables(root)).equals(whole)
    assert ds.read_dataset(root, columns=["path"]).column("path").to_pylist() == whole.column("path").to_pylist()
    # every listed part exists with the recorded size and digest; no temp file is left behind
    for info, path in zip(manifest.parts, ds.part_paths(root)):
        data = open(path, "rb").read()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (info.bytes, info.sha256)
        assert pq.ParquetFile(path).metadata.num_rows == info.rows
    assert sorted(p.name for p in root.iterdir()) == [ds.MANIFEST] + [p.name for p in manifest.parts]
    assert ds.read_manifest(root).schema.equals(SCHEMA)
    assert ds.read_manifest(root).digest == manifest.digest


def test_cut_keeps_groups_whole(tmp_path):
    root = tmp_path / "d"
    with ds.PartWriter(root, SCHEMA, part_bytes=1 << 30) as w:
        w.write(_rows(0, 5))
        w.cut()
        w.write(_rows(5, 3))
    assert [p.rows for p in ds.read_manifest(root).parts] == [5, 3]


def test_same_rows_give_identical_bytes_and_digests(tmp_path):
    infos = [ds.write_part(tmp_path / name, 0, _rows(0, 50)) for name in ("a", "b")]
    assert infos[0] == infos[1]
    m1 = ds.write_manifest(tmp_path / "a", infos[:1], SCHEMA)
    m2 = ds.write_manifest(tmp_path / "b", infos[1:], SCHEMA)
    assert m1.digest == m2.digest
    assert (tmp_path / "a" / ds.MANIFEST).read_bytes() == (tmp_path / "b" / ds.MANIFEST).read_bytes()
    other = ds.write_part(tmp_path / "c", 0, _rows(1, 50))
    assert other.sha256 != infos[0].sha256


def test_write_part_by_index_and_manifest_last(tmp_path):
    root = tmp_path / "d"
    infos = [ds.write_part(root, i, _rows(i * 10, 10)) for i in (2, 0, 1)]  # workers finish in any order
    with pytest.raises(FileNotFoundError, match="not a complete dataset"):
        ds.read_manifest(root)
    with pytest.raises(ValueError, match="not a complete dataset"):
        read_table(root)
    ds.write_manifest(root, sorted(infos, key=lambda p: p.name), SCHEMA)
    assert ds.read_dataset(root).equals(_rows(0, 30))


def test_manifest_prunes_parts_it_does_not_list(tmp_path):
    root = tmp_path / "d"
    old = [ds.write_part(root, i, _rows(i * 10, 10)) for i in range(3)]
    ds.write_manifest(root, old, SCHEMA)
    new = [ds.write_part(root, 0, _rows(100, 4))]
    ds.write_manifest(root, new, SCHEMA)
    assert pq.read_table(root).equals(_rows(100, 4))
    assert ds.read_manifest(root).num_rows == 4


def test_empty_dataset_keeps_its_schema(tmp_path):
    root = tmp_path / "d"
    manifest = ds.PartWriter(root, SCHEMA).close()
    assert manifest.num_rows == 0 and len(manifest.parts) == 1
    assert ds.read_dataset(root).schema.equals(SCHEMA)
    assert pq.read_table(root).schema.equals(SCHEMA)
    assert list(ds.iter_tables(root)) == [] or all(t.num_rows == 0 for t in ds.iter_tables(root))


def test_failed_write_leaves_no_part(tmp_path):
    root = tmp_path / "d"
    bad = pa.table({"repo_name": [1]})
    with pytest.raises(Exception):
        with ds.PartWriter(root, SCHEMA) as w:
            w.write(_rows(0, 3))
            w.write(bad)
    assert not any(p.name.endswith(".parquet") for p in root.iterdir())
    assert not ds.is_dataset(root)


def test_broken_manifest_is_a_clear_error(tmp_path):
    root = tmp_path / "d"
    ds.PartWriter(root, SCHEMA).close()
    (root / ds.MANIFEST).write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="format"):
        ds.read_manifest(root)


def test_read_table_still_reads_a_single_file(tmp_path):
    pq.write_table(_rows(0, 5), tmp_path / "one.parquet")
    assert read_table(tmp_path / "one.parquet").equals(_rows(0, 5))
    assert not ds.is_dataset(tmp_path / "one.parquet")
    with pytest.raises(ValueError, match="missing required columns"):
        read_table(tmp_path / "one.parquet", required=["stars"])


def test_row_groups_of_bounded_bytes_and_the_same_bytes_however_the_input_is_chunked(tmp_path):
    table = _rows(0, 300)
    info = ds.write_part(tmp_path / "a", 0, table, row_group_bytes=500)
    pf = pq.ParquetFile(tmp_path / "a" / info.name)
    sizes = [sum(len(c) for c in pf.read_row_group(i, columns=["content"]).column(0).to_pylist())
             for i in range(pf.num_row_groups)]
    longest = max(len(c) for c in table.column("content").to_pylist())
    assert pf.num_row_groups > 5 and max(sizes) <= 500 + longest  # rows are never split
    chunked = pa.concat_tables([table.slice(i, 7) for i in range(0, 300, 7)])
    assert ds.write_part(tmp_path / "b", 0, chunked, row_group_bytes=500) == info


def test_a_worker_streams_its_own_part_and_empty_parts_keep_alignment(tmp_path):
    root = tmp_path / "d"
    with ds.PartStream(root, 1, SCHEMA) as part:
        part.write(_rows(0, 4))
        part.write(_rows(4, 4))
    with ds.PartStream(root, 0, SCHEMA) as empty:
        pass
    assert part.info.rows == 8 and empty.info.rows == 0
    ds.write_manifest(root, [empty.info, part.info], SCHEMA)
    assert pq.ParquetFile(root / part.info.name).metadata.num_row_groups == 2  # one row group per write
    assert ds.read_dataset(root).equals(_rows(0, 8))
    w = ds.PartWriter(tmp_path / "e", SCHEMA, part_bytes=None)
    w.write(_rows(0, 2))
    w.cut()
    w.cut(keep_empty=True)
    w.write(_rows(2, 2))
    assert [p.rows for p in w.close().parts] == [2, 0, 2]
