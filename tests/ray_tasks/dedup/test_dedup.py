import json
import random
import re

import numpy as np
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.near_dedup_corpus import exact_jaccard, jaccard_pairs, make_corpus, read_sources
from ray_tasks.dedup.lsh import connected_labels
from ray_tasks.dedup.minhash import _token_hashes, signatures
from ray_tasks.dedup.params import DedupParams
from ray_tasks.dedup.source import ParquetSource
from ray_tasks.dedup.stage import dedup, priority_table, repo_trees
from ray_tasks.executor import RayParams, executor_session, wants_ray
from tests.ray_tasks.dedup.helpers import (candidate_probability, exact_dedup, kept_rows, plain_repo_trees, run_dedup,
                                           token_hash)

SEED = DedupParams()
"""The seed's parameters (params.yaml's defaults)."""
CFG = DedupParams(batch_size=7, batch_bytes=1 << 20, num_partitions=3)
"""Small batches and partitions, so that even tiny tables exercise several map and reduce tasks."""


def _table(rows):
    return pa.Table.from_pylist(rows)


def _words(n, tag, rng):
    return [f"{tag}{rng.getrandbits(32):x}" for _ in range(n)]


def _pair_at(j_target, n=400, seed=0):
    """Two texts of distinct words whose 5-gram Jaccard is close to ``j_target`` (exact value returned)."""
    rng = random.Random(seed)
    a = _words(n, "a", rng)
    # Keeping the first k words shares k-4 shingles out of 2(n-4)-(k-4): solve for k.
    s = n - 4
    k = int(round(2 * s * j_target / (1 + j_target))) + 4
    b = a[:k] + _words(n - k, "b", rng)
    ta, tb = " ".join(a), " ".join(b)
    return ta, tb, exact_jaccard(ta, tb, SEED)


def _kept(result):
    return sorted(zip(result.kept_names.column("repo_name").to_pylist(), result.kept_names.column("path").to_pylist()))


# --------------------------------------------------------------------------- exact (the priority order alone)
def test_keeps_one_copy_by_license_then_stars_then_name():
    rows = [
        dict(repo_name="b", path="x.py", content="same", length_bytes=4, sha256="h1", license_type="no_license", star_events_count=100),
        dict(repo_name="a", path="x.py", content="same", length_bytes=4, sha256="h1", license_type="permissive", star_events_count=1),
        dict(repo_name="c", path="x.py", content="same", length_bytes=4, sha256="h1", license_type="permissive", star_events_count=5),
        dict(repo_name="a", path="y.py", content="other", length_bytes=5, sha256="h2", license_type="permissive", star_events_count=1),
    ]
    kept, rejected = exact_dedup(_table(rows))
    assert kept.num_rows == 2
    survivors = {(r["repo_name"], r["sha256"]) for r in kept.to_pylist()}
    assert survivors == {("c", "h1"), ("a", "h2")}  # permissive beats stars; then more stars wins
    assert rejected.column("reason").to_pylist() == ["exact_duplicate", "exact_duplicate"]
    assert set(rejected.column("detail").to_pylist()) == {"c/x.py"}


def test_kept_rows_stay_in_input_order_and_empty_input():
    rows = [dict(repo_name=r, path="p", content=r, length_bytes=1, sha256=r, license_type="permissive") for r in "zyx"]
    kept, rejected = exact_dedup(_table(rows))
    assert kept.column("repo_name").to_pylist() == ["z", "y", "x"]
    assert rejected.num_rows == 0
    kept, rejected = exact_dedup(_table(rows).slice(0, 0))
    assert kept.num_rows == 0 and rejected.num_rows == 0


# --------------------------------------------------------------------------- shingling and signatures
def test_tokens_match_the_seeds_unicode_split():
    texts = ["", "a", "a  b..c", "(x)", "café — naïve “q” 日本語テキスト, 😀 end", "\u00a0nbsp\u2003em ½ ²", "x_y 1.5e3\r\n\tz"]
    th, doc = _token_hashes(pa.array(texts, pa.large_string()))
    for i, text in enumerate(texts):
        expected = [token_hash(t.encode()) for t in re.split(r"\W", text.lower())]
        assert th[doc == i].tolist() == expected, text


def test_signatures_estimate_jaccard_and_short_documents_collapse():
    ta, tb, j = _pair_at(0.6)
    sig = signatures(pa.array([ta, tb, "tiny", "a b", ""], pa.large_string()), SEED)
    assert sig.shape == (5, 250) and sig.dtype == np.uint32
    assert abs((sig[0] == sig[1]).mean() - j) < 0.1  # 250 permutations: standard error ~0.03
    # Fewer than 5 tokens: no shingles, the all-MAX signature (the seed's quirk), so they share every band.
    assert (sig[2:] == 0xFFFFFFFF).all()
    assert np.array_equal(signatures(pa.array([ta], pa.large_string()), SEED)[0], sig[0])  # batch-independent


def test_planted_pairs_at_known_jaccard(tmp_path):
    """Pairs well above the threshold merge; pairs well below stay apart (25 x 10 bands, verified at 0.7)."""
    rows, expect = [], {}
    for i, target in enumerate([1.0, 0.95, 0.9, 0.85, 0.5, 0.4, 0.2]):
        ta, tb, j = _pair_at(target, seed=i)
        assert abs(j - target) < 0.02
        rows += [dict(repo_name=f"r{i}a", path="f.py", content=ta), dict(repo_name=f"r{i}b", path="f.py", content=tb)]
        expect[i] = j >= 0.8
    assert candidate_probability(0.85, SEED) > 0.99 > 0.03 > candidate_probability(0.5, SEED)
    r = run_dedup(_table(rows), tmp_path / "pairs", CFG, use_ray=False)
    cid = dict(zip(r.clusters.column("repo_name").to_pylist(), r.clusters.column("cluster_id").to_pylist()))
    for i, dup in expect.items():
        assert (cid.get(f"r{i}a", -1) == cid.get(f"r{i}b", -2)) == dup, (i, dup)
    assert r.stats["exact_removed"] == 1 and r.stats["near_removed"] == 3


def test_union_find_labels_are_the_smallest_member():
    parent = np.arange(8)
    edges = np.array([[5, 7], [7, 6], [3, 1], [6, 2]])
    assert connected_labels(parent, edges).tolist() == [0, 1, 2, 1, 4, 2, 2, 2]
    # Starting from earlier labels (an index) and joining two old components through a new node.
    old = np.array([0, 0, 2, 2, 4])
    assert connected_labels(old, np.array([[4, 3], [4, 1]])).tolist() == [0, 0, 0, 0, 0]


# --------------------------------------------------------------------------- which copy survives
def test_cluster_keeps_the_seed_order_license_stars_forks_dates_then_name(tmp_path):
    ta, tb, _ = _pair_at(0.95, seed=3)
    base = dict(path="f.py", content=ta)

    def winner(rows):
        r = run_dedup(_table(rows), tmp_path / f"w{len(list(tmp_path.iterdir()))}", CFG, use_ray=False)
        return r.kept_names.column("repo_name").to_pylist()

    mk = lambda name, content=tb, **kw: dict(base, repo_name=name, content=content, **kw)  # noqa: E731
    defaults = dict(license_type="permissive", star_events_count=1, fork_events_count=1,
                    revision_date="2020-01-01", visit_date="2023-01-01")
    assert winner([mk("a", ta, **{**defaults, "license_type": "no_license", "star_events_count": 99}),
                   mk("b", **defaults)]) == ["b"]
    assert winner([mk("a", ta, **defaults), mk("b", **{**defaults, "star_events_count": 2})]) == ["b"]
    assert winner([mk("a", ta, **defaults), mk("b", **{**defaults, "fork_events_count": 2})]) == ["b"]
    assert winner([mk("a", ta, **defaults), mk("b", **{**defaults, "revision_date": "2021-01-01"})]) == ["b"]
    assert winner([mk("a", ta, **defaults), mk("b", **{**defaults, "visit_date": "2024-01-01"})]) == ["b"]
    assert winner([mk("b", ta, **defaults), mk("a", **defaults)]) == ["a"]  # deterministic fallback: name


def test_identical_repositories_are_removed_whole(tmp_path):
    rng = random.Random(7)
    files = {f"m{i}.py": " ".join(_words(50, f"f{i}", rng)) for i in range(3)}
    rows = []
    for repo, lic in (("orig", "permissive"), ("clone", "no_license")):
        rows += [dict(repo_name=repo, path=p, content=c, license_type=lic) for p, c in files.items()]
    # A repository sharing one file but not its tree is not a repository duplicate.
    rows.append(dict(repo_name="partial", path="m0.py", content=files["m0.py"], license_type="permissive"))
    rows.append(dict(repo_name="partial", path="own.py", content=" ".join(_words(50, "own", rng)), license_type="permissive"))
    r = run_dedup(_table(rows), tmp_path / "idx", CFG, use_ray=False)
    reasons = {(x["repo_name"], x["path"]): x["reason"] for x in r.rejected.to_pylist()}
    assert {k: v for k, v in reasons.items() if k[0] == "clone"} == {("clone", p): "exact_duplicate_repo" for p in files}
    assert reasons[("partial", "m0.py")] == "exact_duplicate"
    assert ("partial", "own.py") in _kept(r)
    assert r.stats["exact_repo_removed"] == 3 and r.stats["exact_removed"] == 4


def test_repository_trees_are_the_sorted_path_hash_lines():
    names = ["b", "a", "b", "é", "a", "b"]
    paths = ["z.py", "x.py", "ä/ü.py", "k", "X.py", "a.py"]
    hashes = ["h1", "h2", "h3", "h4", "h2", "h1"]
    prio = priority_table(pa.table({"repo_name": names, "path": paths}))
    assert repo_trees(prio, pa.array(hashes)) == plain_repo_trees(names, paths, hashes)


# --------------------------------------------------------------------------- incremental
def _corpus(n, seed):
    # A pinned distribution's files, so the corpus is the same in every fresh environment.
    import pygments

    sources = read_sources(root=Path(pygments.__file__).parent, limit=150, max_bytes=8 * 1024)
    return make_corpus(sources, n_files=n, seed=seed, files_per_repo=10,
                       near_fraction=0.3, exact_fraction=0.1, repo_clone_fraction=0.1)


def test_incremental_batch_gives_the_full_runs_kept_set(tmp_path):
    table = _corpus(300, seed=5)
    repos = sorted(set(table.column("repo_name").to_pylist()))
    new_repos = set(repos[:: 10])  # ~10% of the repositories arrive later
    is_new = pa.array([r in new_repos for r in table.column("repo_name").to_pylist()])
    old, new = table.filter(pa.compute.invert(is_new)), table.filter(is_new)
    full = run_dedup(table, tmp_path / "full", CFG, use_ray=False)
    first = run_dedup(old, tmp_path / "inc", CFG, use_ray=False)
    second = run_dedup(new, tmp_path / "inc", CFG, use_ray=False)
    superseded = set(zip(second.superseded.column("repo_name").to_pylist(), second.superseded.column("path").to_pylist()))
    incremental = sorted((set(_kept(first)) - superseded) | set(_kept(second)))
    assert incremental == _kept(full)
    assert second.stats["superseded_in_index"] > 0  # the batch replaced indexed files, repositories included
    assert "exact_duplicate_repo" in second.superseded.column("reason").to_pylist()
    # Only the new batch was hashed: signatures for its distinct, not-yet-indexed contents.
    assert 0 < second.stats["signatures_computed"] <= new.num_rows
    assert second.stats["index_docs"] == table.num_rows
    assert full.stats["near_removed"] > 0 and full.stats["exact_repo_removed"] > 0


def test_new_better_copy_supersedes_the_indexed_one(tmp_path):
    ta, tb, _ = _pair_at(0.9, seed=11)
    run_dedup(_table([dict(repo_name="old", path="f.py", content=ta, license_type="no_license")]), tmp_path / "idx", CFG, use_ray=False)
    r = run_dedup(_table([dict(repo_name="new", path="f.py", content=tb, license_type="permissive")]), tmp_path / "idx", CFG, use_ray=False)
    assert _kept(r) == [("new", "f.py")]
    assert r.superseded.to_pylist() == [{"repo_name": "old", "path": "f.py", "reason": "near_duplicate", "detail": "new/f.py"}]


def test_index_refuses_other_parameters(tmp_path):
    run_dedup(_table([dict(repo_name="a", path="f.py", content="x y z w v u")]), tmp_path / "idx", CFG, use_ray=False)
    # The stored config is what indexes built before DedupParams hold: they still load.
    meta = json.loads((tmp_path / "idx" / "meta.json").read_text())
    assert meta["config"] == dict(ngram_size=5, num_perm=250, bands=25, rows=10, threshold=0.7, seed=42, min_tokens=5)
    assert meta["num_partitions"] == 3
    other = CFG.model_copy(update={"seed": 1})
    with pytest.raises(ValueError, match="meta.json: index built with"):
        run_dedup(_table([dict(repo_name="b", path="f.py", content="x y z w v u")]), tmp_path / "idx", other, use_ray=False)


def test_index_keeps_its_partitioning(tmp_path):
    run_dedup(_table([dict(repo_name="a", path="f.py", content="x y z w v u")]), tmp_path / "idx", CFG, use_ray=False)
    more = CFG.model_copy(update={"num_partitions": 5})  # not part of the config an index refuses
    run_dedup(_table([dict(repo_name="b", path="f.py", content="x y z w v t")]), tmp_path / "idx", more, use_ray=False)
    assert sorted(p.name for p in (tmp_path / "idx" / "seg-00001").glob("keys-*.npy")) == ["keys-00.npy", "keys-01.npy", "keys-02.npy"]


@pytest.mark.parametrize("bad, match", [
    (dict(bands=30), "bands \\* rows = 300 exceeds num_perm = 250"), (dict(threshold=0), "threshold"),
    (dict(threshold=1.5), "threshold"), (dict(ngram_size=0), "ngram_size"), (dict(min_tokens=-1), "min_tokens"),
])
def test_bad_parameters_fail_naming_the_key(bad, match):
    with pytest.raises(ValueError, match=match):
        DedupParams(**bad)


def test_missing_columns_name_the_origin(tmp_path):
    with pytest.raises(ValueError, match=r"in\.parquet: missing required columns \['content'\]"):
        run_dedup(_table([dict(repo_name="a", path="p")]), tmp_path / "idx", CFG, use_ray=False, name="in.parquet")


# --------------------------------------------------------------------------- quality on real code
def test_decisions_agree_with_exact_jaccard_on_real_code(tmp_path):
    sources = read_sources(limit=400, max_bytes=16 * 1024)
    pairs = jaccard_pairs(sources, 250, seed=2, rates=(0.0, 0.9))
    rows = []
    for i, (a, b) in enumerate(pairs):
        rows += [dict(repo_name=f"p{i:04d}a", path="f.py", content=a), dict(repo_name=f"p{i:04d}b", path="f.py", content=b)]
    r = run_dedup(_table(rows), tmp_path / "idx", SEED, use_ray=False)
    cid = dict(zip(r.clusters.column("repo_name").to_pylist(), r.clusters.column("cluster_id").to_pylist()))
    j = np.array([exact_jaccard(a, b, SEED) for a, b in pairs])
    dup = np.array([cid.get(f"p{i:04d}a", -1) == cid.get(f"p{i:04d}b", -2) for i in range(len(pairs))])
    pos, neg = j >= 0.8, j <= 0.6
    assert pos.sum() >= 50 and neg.sum() >= 20
    tp, fp, fn = (dup & pos).sum(), (dup & neg).sum(), (~dup & pos).sum()
    assert tp / (tp + fp) >= 0.95 and tp / (tp + fn) >= 0.95


# --------------------------------------------------------------------------- Ray, determinism, CLI
def _same_outputs(a, b, tmp_path):
    assert kept_rows(b, tmp_path / "b.kept.parquet").equals(kept_rows(a, tmp_path / "a.kept.parquet"))
    assert b.kept_names.equals(a.kept_names)
    assert b.clusters.equals(a.clusters)
    assert b.rejected.equals(a.rejected)
    assert b.stats == a.stats


def test_four_row_groups_in_two_files_give_the_one_fragment_result(tmp_path):
    """The map tasks read their own row groups: how the input is cut must not change a thing."""
    table = _corpus(200, seed=9)
    one = run_dedup(table, tmp_path / "one", CFG)
    n = table.num_rows
    for i, (s, e) in enumerate([(0, n // 3), (n // 3, n)]):
        pq.write_table(table.slice(s, e - s), tmp_path / f"part-{i}.parquet", row_group_size=-(-(e - s) // 2))
    source = ParquetSource.open([tmp_path / "part-0.parquet", tmp_path / "part-1.parquet"])
    assert source.num_groups == 4 and source.num_rows == table.num_rows
    four = dedup(source, tmp_path / "four", CFG, use_ray=False)
    assert one.stats["near_removed"] > 0 and one.stats["exact_repo_removed"] > 0
    _same_outputs(one, four, tmp_path)
    for name in ("keys-00.npy", "ids-02.npy", "sig-00000.npy"):  # the index too, file for file
        assert np.array_equal(np.load(tmp_path / "one" / "seg-00000" / name), np.load(tmp_path / "four" / "seg-00000" / name))
    kept = pq.read_table(tmp_path / "b.kept.parquet")
    assert kept.num_rows == one.stats["files_kept"] and kept.schema.equals(table.schema, check_metadata=False)


def test_ray_and_local_runs_are_identical(tmp_path, ray_session):
    table = _corpus(200, seed=9)
    local = run_dedup(table, tmp_path / "a", CFG, row_groups=4)
    on_ray = run_dedup(table, tmp_path / "c", CFG, use_ray=True, row_groups=4)
    _same_outputs(local, on_ray, tmp_path)
    for name in ("keys-00.npy", "ids-02.npy", "sig-00000.npy"):
        assert np.array_equal(np.load(tmp_path / "a" / "seg-00000" / name), np.load(tmp_path / "c" / "seg-00000" / name))


def test_cli_dedup_writes_kept_and_clusters_then_extends_the_index(tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    table = _corpus(120, seed=4)
    half = table.num_rows // 2
    pq.write_table(table.slice(0, half), tmp_path / "old.parquet")
    (tmp_path / "new").mkdir()
    pq.write_table(table.slice(half), tmp_path / "new" / "part-0.parquet")
    runner = CliRunner()
    res = runner.invoke(app, ["dedup", "--input", str(tmp_path / "old.parquet"), "--output", str(tmp_path / "out"),
                              "--no-ray", "--params", str(tmp_path / "none.yaml")])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    kept = pq.read_table(tmp_path / "out" / "kept.parquet")
    clusters = pq.read_table(tmp_path / "out" / "clusters.parquet")
    assert summary["files_in"] == half == kept.num_rows + summary["exact_removed"] + summary["near_removed"]
    assert clusters.column_names[:4] == ["cluster_id", "repo_name", "path", "kept"]
    assert set(kept.column_names) >= {"repo_name", "path", "content", "planted"}
    res = runner.invoke(app, ["dedup", "--input", str(tmp_path / "new"), "--output", str(tmp_path / "out2"),
                              "--index", str(tmp_path / "out" / "index"), "--executor", "local", "--params", str(tmp_path / "none.yaml")])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["files_in"] == table.num_rows - half and summary["ray"] is False
    assert (tmp_path / "out2" / "superseded.parquet").exists()
    from ray_tasks.datasets import write_manifest, write_part  # a partitioned dataset as input: its parts
    write_manifest(tmp_path / "ds", [write_part(tmp_path / "ds", i, table.slice(i * half, half)) for i in range(2)],
                   table.schema)
    (tmp_path / "ds" / ".part-00002.parquet.x.tmp").write_bytes(b"a killed writer's leftover")
    res = runner.invoke(app, ["dedup", "--input", str(tmp_path / "ds"), "--output", str(tmp_path / "out3"), "--no-ray",
                              "--params", str(tmp_path / "none.yaml")])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["files_in"] == 2 * half


def test_cli_dedup_bad_input_names_the_file(tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    pq.write_table(pa.table({"repo_name": ["a"], "text": ["x"]}), tmp_path / "nocontent.parquet")
    runner = CliRunner()
    for name, msg in (("broken.parquet", "not a readable Parquet file"), ("nocontent.parquet", "missing required columns")):
        res = runner.invoke(app, ["dedup", "--input", str(tmp_path / name), "--output", str(tmp_path / "o"), "--no-ray"])
        assert res.exit_code == 2
        assert name in res.output and msg in " ".join(res.output.split())
    assert not (tmp_path / "o").exists()
    pq.write_table(_corpus(10, seed=1), tmp_path / "ok.parquet")
    res = runner.invoke(app, ["dedup", "--input", str(tmp_path / "ok.parquet"), "--output", str(tmp_path / "o"), "--executor", "spark"])
    assert res.exit_code == 2 and "executor must be auto, ray, local, got 'spark'" in " ".join(res.output.split())


def test_auto_executor_starts_ray_only_when_it_pays_off():
    mb = 2**20
    auto = RayParams(executor="auto", auto_min_mb=1024)
    assert not wants_ray(auto, 100 * mb, ray_up=False)  # a laptop corpus: one process
    assert wants_ray(auto, 2048 * mb, ray_up=False)
    assert wants_ray(auto, 1, ray_up=True)  # already up: free to use
    assert wants_ray(auto.model_copy(update={"address": "ray://head:10001"}), 1)  # a cluster is always used
    assert wants_ray(RayParams(executor="ray"), 1) and not wants_ray(RayParams(executor="local"), 10**12)
    with executor_session(RayParams(executor="ray"), 10**12, executor="local") as use_ray:  # the CLI's --no-ray
        assert use_ray is False
    with pytest.raises(ValueError, match="executor"):
        RayParams(executor="threads")


def test_a_partitioned_input_gives_part_aligned_outputs_and_the_one_file_result(tmp_path):
    """Four parts of a dataset (one of them nothing but duplicates): the same decisions as one
    file, and output part k holds exactly the kept rows of input part k."""
    from ray_tasks.datasets import part_paths, read_dataset, read_manifest, write_manifest, write_part
    from ray_tasks.dedup.source import open_dataset
    from ray_tasks.dedup.stage import write_kept_parts

    table = _corpus(200, seed=9)
    one = run_dedup(table, tmp_path / "one", CFG)
    n = table.num_rows
    cuts = [0, n // 4, n // 2, n // 2 + 3, n]
    dup = table.slice(0, 3)  # a fifth part of exact copies of the first rows: nothing in it is kept
    pieces = [table.slice(a, b - a) for a, b in zip(cuts, cuts[1:])]
    infos = [write_part(tmp_path / "in", i, p, row_group_bytes=4000) for i, p in enumerate([*pieces, dup])]
    write_manifest(tmp_path / "in", infos, table.schema)
    source = open_dataset(tmp_path / "in")
    assert len(source.files) == 5 and source.num_groups > 5
    parted = dedup(source, tmp_path / "parted", CFG, use_ray=False)
    whole = run_dedup(pa.concat_tables([table, dup]), tmp_path / "whole", CFG)
    assert _kept(parted) == _kept(whole) and parted.stats == whole.stats
    assert _kept(parted) == _kept(one)  # the copies add no kept file
    write_kept_parts(parted, tmp_path / "out", use_ray=False)
    out_parts = read_manifest(tmp_path / "out").parts
    assert [p.name for p in out_parts] == [p.name for p in infos]
    assert out_parts[-1].rows == 0
    kept = set(_kept(parted))
    for src, dst in zip(part_paths(tmp_path / "in"), part_paths(tmp_path / "out")):
        rows = pq.read_table(src)
        mask = pa.array([(r, p) in kept for r, p in zip(rows.column("repo_name").to_pylist(), rows.column("path").to_pylist())])
        assert pq.read_table(dst).equals(rows.filter(mask))
    assert read_dataset(tmp_path / "out").equals(kept_rows(parted, tmp_path / "single.parquet"))


def test_kept_parts_written_on_ray_are_the_local_bytes(tmp_path, ray_session):
    from ray_tasks.datasets import write_manifest, write_part
    from ray_tasks.dedup.source import open_dataset
    from ray_tasks.dedup.stage import write_kept_parts

    table = _corpus(120, seed=3)
    half = table.num_rows // 2
    write_manifest(tmp_path / "in", [write_part(tmp_path / "in", i, table.slice(i * half, half if i == 0 else None))
                                     for i in range(2)], table.schema)
    result = dedup(open_dataset(tmp_path / "in"), tmp_path / "index", CFG, use_ray=False)
    write_kept_parts(result, tmp_path / "local", use_ray=False)
    write_kept_parts(result, tmp_path / "ray", use_ray=True)
    for name in ("part-00000.parquet", "part-00001.parquet", "_manifest.json"):
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes()


@pytest.mark.parametrize("dies_in", ["write_state", "write_repos", "save_meta"])
def test_an_update_killed_before_meta_json_leaves_the_index_as_it_was(tmp_path, monkeypatch, dies_in):
    """An incremental batch interrupted anywhere before meta.json is rewritten (the segment
    renamed, the new state written...) leaves the index as meta.json described it: the batch run
    again gives what an uninterrupted update gives."""
    from ray_tasks.dedup import index as ix

    table = _corpus(120, seed=4)
    half = table.num_rows // 2
    clean = tmp_path / "clean"
    run_dedup(table.slice(0, half), clean, CFG, name="old.parquet")
    want = run_dedup(table.slice(half), clean, CFG, name="new.parquet")
    killed = tmp_path / "killed"
    run_dedup(table.slice(0, half), killed, CFG, name="old.parquet")

    def die(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    with monkeypatch.context() as m:
        m.setattr(ix, dies_in, die)
        with pytest.raises(KeyboardInterrupt):
            run_dedup(table.slice(half), killed, CFG, name="new.parquet")
    assert len(json.loads((killed / "meta.json").read_text())["segments"]) == 1
    got = run_dedup(table.slice(half), killed, CFG, name="new.parquet")
    _same_outputs(want, got, tmp_path)
    assert got.superseded.equals(want.superseded)
    for f in sorted(p.relative_to(clean) for p in clean.rglob("*") if p.is_file()):
        assert (killed / f).read_bytes() == (clean / f).read_bytes(), f
    assert sorted(p.relative_to(killed) for p in killed.rglob("*")) == sorted(p.relative_to(clean) for p in clean.rglob("*"))
