"""The signature cache only saves time: a warm, a grown and a damaged cache give a cold run's bytes."""

import hashlib
import json
import logging
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from ray_tasks.dedup.minhash import signatures
from ray_tasks.dedup.params import DedupParams
from ray_tasks.dedup.sigcache import LAST_RUN, CacheView, SignatureCache, cache_folder, content_keys, write_segment
from ray_tasks.dedup.source import ParquetSource
from ray_tasks.dedup.stage import dedup, sha256_hex, write_kept
from tests.ray_tasks.dedup.test_dedup import _corpus

CFG = DedupParams(batch_size=7, batch_bytes=1 << 20, num_partitions=3)


def _with_sha(table: pa.Table) -> pa.Table:
    """The corpus as ingest writes it: with its contents' sha256 (the cache's key)."""
    return table.append_column("sha256", sha256_hex(table.column("content")))


def _run(table: pa.Table, out, work=None, row_groups: int = 3):
    """The stage on ``table`` into ``out`` (index and kept rows), with the cache under ``work`` or none;
    the md5 of every output file, and the run's metrics and cache counts."""
    out.mkdir(parents=True)
    pq.write_table(table, out / "in.parquet", row_group_size=max(1, -(-table.num_rows // row_groups)))
    cache = SignatureCache.open(work, CFG) if work is not None else None
    result = dedup(ParquetSource.open([out / "in.parquet"]), out / "index", CFG, use_ray=False, signature_cache=cache)
    write_kept(result, out / "kept.parquet")
    pq.write_table(result.rejected, out / "rejected.parquet")
    pq.write_table(result.clusters, out / "clusters.parquet")
    files = {str(p.relative_to(out)): hashlib.md5(p.read_bytes()).hexdigest()
             for p in sorted(out.rglob("*")) if p.is_file() and p.name != "in.parquet"}
    return files, result.stats, result.signature_cache


def test_a_warm_cache_computes_nothing_and_changes_no_byte(tmp_path):
    table = _with_sha(_corpus(200, seed=9))
    plain, plain_stats, _ = _run(table, tmp_path / "plain")
    cold, cold_stats, cold_counts = _run(table, tmp_path / "cold", tmp_path / "work")
    warm, warm_stats, warm_counts = _run(table, tmp_path / "warm", tmp_path / "work")
    assert plain_stats["near_removed"] > 0 and len(plain) > 10  # a corpus with near duplicates, a real index
    assert cold == plain and warm == plain  # every index file, the kept rows, rejected, clusters
    assert cold_stats == warm_stats == plain_stats  # signatures_computed: what the index needed
    n = plain_stats["signatures_computed"]
    assert (cold_counts["signatures_computed"], cold_counts["signatures_from_cache"]) == (n, 0)
    assert (warm_counts["signatures_computed"], warm_counts["signatures_from_cache"]) == (0, n)
    assert json.loads((tmp_path / "work" / LAST_RUN).read_text())["signatures_from_cache"] == n
    assert warm_counts["cache_entries"] == n


def test_a_grown_input_signs_only_its_new_contents_and_equals_a_cold_run(tmp_path):
    table = _with_sha(_corpus(300, seed=5))
    repos = sorted(set(table.column("repo_name").to_pylist()))
    late = pa.array([r in set(repos[::10]) for r in table.column("repo_name").to_pylist()])
    _, old_stats, _ = _run(table.filter(pc.invert(late)), tmp_path / "old", tmp_path / "work")
    grown, grown_stats, counts = _run(table, tmp_path / "grown", tmp_path / "work")
    full, full_stats, _ = _run(table, tmp_path / "full")
    assert grown == full and grown_stats == full_stats
    new = full_stats["signatures_computed"] - counts["signatures_from_cache"]
    assert counts["signatures_computed"] == new > 0
    assert counts["signatures_from_cache"] > 0.8 * old_stats["signatures_computed"]  # the old contents', bar a few now exact copies


def test_a_damaged_segment_is_dropped_with_a_log_line_and_recomputed(tmp_path, caplog):
    table = _with_sha(_corpus(200, seed=9))
    plain, _, _ = _run(table, tmp_path / "plain")
    _run(table, tmp_path / "cold", tmp_path / "work")
    folder = cache_folder(tmp_path / "work", CFG)
    sig_files = sorted(folder.glob("*.sig.npy"))
    assert len(sig_files) == 3  # one segment per map task (one per row group)
    n_lost = len(np.load(str(sig_files[0]).replace(".sig.npy", ".keys.npy")))
    data = sig_files[0].read_bytes()
    sig_files[0].write_bytes(data[: len(data) // 2])  # a truncated file
    with caplog.at_level(logging.WARNING):
        damaged, _, counts = _run(table, tmp_path / "damaged", tmp_path / "work")
    assert damaged == plain
    assert "is damaged" in caplog.text and sig_files[0].name[:32] in caplog.text
    assert counts["signatures_computed"] == n_lost > 0 and counts["damaged_segments_removed"] == 1
    rebuilt, _, counts = _run(table, tmp_path / "rebuilt", tmp_path / "work")  # the segment is written again
    assert rebuilt == plain and counts["signatures_computed"] == 0


def test_a_flipped_byte_is_caught_by_the_segment_digest(tmp_path, caplog):
    table = _with_sha(_corpus(60, seed=2))
    plain, _, _ = _run(table, tmp_path / "plain")
    _run(table, tmp_path / "cold", tmp_path / "work")
    sig = next(cache_folder(tmp_path / "work", CFG).glob("*.sig.npy"))
    data = bytearray(sig.read_bytes())
    data[-1] ^= 0xFF  # same size, one signature value wrong
    sig.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        again, _, counts = _run(table, tmp_path / "again", tmp_path / "work")
    assert again == plain and "is damaged" in caplog.text and counts["damaged_segments_removed"] == 1


def test_a_shrunk_input_compacts_the_cache_to_what_it_used(tmp_path):
    table = _with_sha(_corpus(200, seed=9))
    _run(table, tmp_path / "all", tmp_path / "work")
    small = table.slice(0, 40)
    plain, _, _ = _run(small, tmp_path / "plain")
    got, _, counts = _run(small, tmp_path / "small", tmp_path / "work")
    assert got == plain and counts["signatures_computed"] == 0
    assert counts["compacted"] and counts["cache_segments"] == 1
    assert counts["cache_entries"] == counts["signatures_from_cache"]
    again, _, counts = _run(small, tmp_path / "again", tmp_path / "work")
    assert again == plain and counts["signatures_computed"] == 0 and not counts["compacted"]


def test_too_many_segments_are_compacted_into_one(tmp_path, monkeypatch):
    """Each run adds a segment per map task; past MAX_SEGMENTS they become one, all of it still used."""
    from ray_tasks.dedup import sigcache

    table = _with_sha(_corpus(300, seed=5))
    repos = sorted(set(table.column("repo_name").to_pylist()))
    late = pa.array([r in set(repos[::10]) for r in table.column("repo_name").to_pylist()])
    _, _, first = _run(table.filter(pc.invert(late)), tmp_path / "old", tmp_path / "work")
    assert first["cache_segments"] == 3 and not first["compacted"]
    monkeypatch.setattr(sigcache, "MAX_SEGMENTS", 4)
    grown, _, counts = _run(table, tmp_path / "grown", tmp_path / "work")  # 3 more segments: 6 > 4
    full, _, _ = _run(table, tmp_path / "full")
    assert grown == full and counts["compacted"] and counts["cache_segments"] == 1
    assert counts["cache_entries"] == counts["signatures_needed"]
    again, _, counts = _run(table, tmp_path / "again", tmp_path / "work")
    assert again == full and counts["signatures_computed"] == 0 and not counts["compacted"]


def test_signatures_of_a_subset_are_the_rows_of_the_whole_batch():
    contents = _corpus(60, seed=1).column("content").combine_chunks()
    whole = signatures(contents, CFG)
    pick = np.arange(0, len(contents), 3)
    assert np.array_equal(signatures(contents.take(pa.array(pick)), CFG), whole[pick])


def test_other_parameters_use_another_folder_and_the_old_one_is_dropped(tmp_path):
    table = _with_sha(_corpus(60, seed=2))
    _run(table, tmp_path / "a", tmp_path / "work")
    other = CFG.model_copy(update={"seed": 7})
    assert cache_folder(tmp_path / "work", other) != cache_folder(tmp_path / "work", CFG)
    cache = SignatureCache.open(tmp_path / "work", other)
    result = dedup(ParquetSource.open([tmp_path / "a" / "in.parquet"]), tmp_path / "b" / "index", other,
                   use_ray=False, signature_cache=cache)
    assert result.signature_cache["signatures_from_cache"] == 0
    assert [p.name for p in (tmp_path / "work" / "signatures").iterdir()] == [cache_folder(tmp_path / "work", other).name]


def test_a_node_without_the_cache_folder_computes_and_only_logs_the_failed_write(tmp_path, caplog):
    keys = content_keys(pa.array(["ab" * 32, "cd" * 32]))
    out = np.zeros((2, 4), np.uint32)
    hit = CacheView(str(tmp_path / "elsewhere"), ("0" * 32,)).fill(out, keys, np.array([0, -1]), np.array([0, 0]))
    assert not hit.any()  # the segment is not there: both rows are left to compute
    (tmp_path / "file").write_text("a file, not a folder")
    with caplog.at_level(logging.WARNING):
        assert write_segment(tmp_path / "file" / "sub", keys, out) is None
    assert "not written" in caplog.text


def test_a_warm_cache_on_ray_gives_the_local_cold_bytes(tmp_path, ray_session):
    table = _with_sha(_corpus(200, seed=9))
    cold, cold_stats, _ = _run(table, tmp_path / "cold", tmp_path / "work")
    out = tmp_path / "ray"
    out.mkdir()
    pq.write_table(table, out / "in.parquet", row_group_size=-(-table.num_rows // 3))
    result = dedup(ParquetSource.open([out / "in.parquet"]), out / "index", CFG, use_ray=True,
                   signature_cache=SignatureCache.open(tmp_path / "work", CFG))
    assert result.stats == cold_stats and result.signature_cache["signatures_computed"] == 0
    for name, digest in cold.items():
        if name.startswith("index/"):
            assert hashlib.md5((out / name).read_bytes()).hexdigest() == digest, name


def test_a_killed_runs_leftovers_go_and_a_concurrent_runs_files_stay(tmp_path):
    table = _with_sha(_corpus(60, seed=2))
    _run(table, tmp_path / "cold", tmp_path / "work")
    folder = cache_folder(tmp_path / "work", CFG)
    killed = folder / ".0123.sig.npy.dead.tmp"  # a run killed while writing, an hour ago
    killed.write_bytes(b"partial")
    os.utime(killed, (time.time() - 3600,) * 2)
    cache = SignatureCache.open(tmp_path / "work", CFG)
    concurrent = folder / ".4567.sig.npy.live.tmp"  # another run writing now
    concurrent.write_bytes(b"in progress")
    result = dedup(ParquetSource.open([tmp_path / "cold" / "in.parquet"]), tmp_path / "again" / "index", CFG,
                   use_ray=False, signature_cache=cache)
    assert result.signature_cache["signatures_computed"] == 0
    assert not killed.exists() and concurrent.exists()
