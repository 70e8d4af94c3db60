"""The stage as it runs: groups of repositories in parallel, outputs streamed in row groups."""

import json
import os
import re
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ray_tasks.datasets import part_paths, read_dataset, read_manifest
from ray_tasks.ingest.groups import group_by_bytes, map_ordered
from ray_tasks.ingest.params import IngestParams
from ray_tasks.ingest.sources import SourceSkips, directory_repositories, repositories
from ray_tasks.ingest.stage import ingest, ingest_stats, ingest_to, plan_groups, repos_table
from ray_tasks.progress import Progress
from ray_tasks.stats import examples
from tests.conftest import MIT


def _stage(out, repos, cfg, use_ray=False, skips=(), progress=None, work_dir=None):
    out.mkdir(parents=True, exist_ok=True)
    stats = ingest_to(out, repos, cfg, use_ray, source_skips=skips, progress=progress, work_dir=work_dir)
    return stats, {"files": read_dataset(out / "files"),
                   **{n: pq.read_table(out / f"{n}.parquet") for n in ("rejected", "repos")}}


def _output_bytes(out):
    """Every output file's bytes by relative path (parts, manifest, rejected, repos)."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_streamed_in_small_groups_and_row_groups_equals_the_whole_table(corpus, tmp_path):
    repos = list(directory_repositories(corpus, None))
    small = IngestParams(max_file_bytes=4000, batch_bytes=2000, row_group_bytes=5000, opt_out=["repo2"])
    progress = Progress("ingest", files=sum(len(r.files) for r in repos), bytes=sum(r.size_hint for r in repos),
                        repos=len(repos))
    with progress:
        stats, out = _stage(tmp_path / "out", repos, small, progress=progress)
    n_groups = len(plan_groups(repos, small).groups)
    assert n_groups >= 4
    manifest = read_manifest(tmp_path / "out" / "files")
    assert len(manifest.parts) == n_groups  # one part per group of whole repositories
    part_repos = [set(pq.read_table(p, columns=["repo_name"]).column(0).to_pylist())
                  for p in part_paths(tmp_path / "out" / "files")]
    assert all(not (a & b) for i, a in enumerate(part_repos) for b in part_repos[i + 1:])  # repositories whole
    assert max(pq.ParquetFile(p).metadata.num_row_groups for p in part_paths(tmp_path / "out" / "files")) > 1
    files, rejected = ingest(list(directory_repositories(corpus, None)), small)  # one group, in memory
    assert out["files"].equals(files) and out["rejected"].equals(rejected)
    assert out["repos"].equals(repos_table(list(directory_repositories(corpus, None))))
    assert stats == {**ingest_stats(out["repos"], files, rejected), "rejected_examples": examples(rejected)}
    assert progress.snapshot().files == stats["files_seen"] and progress.snapshot().fraction == 1.0


def test_parquet_source_is_listed_from_its_repo_column_and_read_by_row_group(tmp_path):
    rows = [{"repo_name": f"o/r{i % 3}", "path": f"/f{i:02d}.py", "content": f"x = {i}\n",
             "gha_license_id": "MIT" if i % 3 == 0 else None} for i in range(12)]
    rows.append({"repo_name": "o/r1", "path": "/LICENSE", "content": MIT, "gha_license_id": None})
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet", row_group_size=4)  # repos span row groups
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    spec = IngestParams.model_validate({"sources": [{"kind": "parquet", "path": str(tmp_path / "t.parquet")}]})
    listed = list(repositories(spec.sources))
    assert [r.name for r in listed] == ["o/r0", "o/r1", "o/r2"]
    assert all(r.rows is None and r.row_groups is not None for r in listed)  # no content read yet
    assert [len(r.row_groups.parts) for r in listed] == [3, 4, 3]
    jsonl = IngestParams.model_validate({"sources": [{"kind": "jsonl", "path": str(tmp_path / "t.jsonl")}]})
    by_parquet, by_jsonl = ingest(listed, spec), ingest(list(repositories(jsonl.sources)), jsonl)
    assert by_parquet[0].drop_columns("source").equals(by_jsonl[0].drop_columns("source"))
    licensed = {r["repo_name"]: r["license_type"] for r in by_parquet[0].to_pylist()}
    assert licensed == {"o/r0": "permissive", "o/r1": "permissive", "o/r2": "no_license"}


def test_on_ray_the_same_bytes_as_in_this_process(corpus, tmp_path, ray_session):
    cfg = IngestParams(batch_bytes=3000, max_in_flight=2, row_group_bytes=8000)
    skips = SourceSkips()
    repos = list(repositories(IngestParams.model_validate(
        {"sources": [{"kind": "directory", "path": str(corpus)}]}).sources, skips=skips))
    local_stats, _ = _stage(tmp_path / "local", repos, cfg)
    ray_stats, _ = _stage(tmp_path / "ray", repos, cfg, use_ray=True)
    assert ray_stats == local_stats
    assert _output_bytes(tmp_path / "local") == _output_bytes(tmp_path / "ray")


def test_a_work_folder_gives_the_same_bytes_and_a_rerun_reuses_every_group(corpus, tmp_path, caplog):
    corpus = shutil.copytree(corpus, tmp_path / "corpus")  # edited below
    cfg = IngestParams(batch_bytes=3000, row_group_bytes=2000)
    repos = list(directory_repositories(corpus, None))
    _stage(tmp_path / "plain", repos, cfg)
    work = tmp_path / "work"
    _stage(tmp_path / "first", list(directory_repositories(corpus, None)), cfg, work_dir=work)
    n_groups = len(read_manifest(tmp_path / "first" / "files").parts)
    assert _output_bytes(tmp_path / "plain") == _output_bytes(tmp_path / "first")
    assert len([d for d in work.iterdir() if d.is_dir()]) == n_groups
    with caplog.at_level("INFO"):
        _stage(tmp_path / "again", list(directory_repositories(corpus, None)), cfg, work_dir=work)
    assert f"{n_groups} groups, {n_groups} reused" in caplog.text
    assert _output_bytes(tmp_path / "again") == _output_bytes(tmp_path / "first")
    # an edited file changes its group's key only: that group is recomputed, the others reused
    victim = next(p for p in sorted(corpus.rglob("*.py")))
    victim.write_text(victim.read_text() + "\n# edited\n")
    caplog.clear()
    with caplog.at_level("INFO"):
        _stage(tmp_path / "edited", list(directory_repositories(corpus, None)), cfg, work_dir=work)
    assert f"{n_groups} groups, {n_groups - 1} reused" in caplog.text
    _stage(tmp_path / "edited_plain", list(directory_repositories(corpus, None)), cfg)
    assert _output_bytes(tmp_path / "edited") == _output_bytes(tmp_path / "edited_plain")
    assert len([d for d in work.iterdir() if d.is_dir()]) == n_groups  # the replaced group's old entry is gone


def _pid(item):
    return item, os.getpid()


def test_map_ordered_keeps_order_and_bounds_what_is_in_flight(ray_session):
    pulled = []

    def items():
        for i in range(8):
            pulled.append(i)
            yield i

    results = map_ordered(_pid, items(), use_ray=True, max_in_flight=2)
    first = next(results)
    assert first[0] == 0 and len(pulled) <= 3  # two submitted, a third waiting for a free slot
    rest = list(results)
    assert [i for i, _ in [first, *rest]] == list(range(8))
    assert {pid for _, pid in [first, *rest]} != {os.getpid()}  # ran in Ray's workers
    assert [i for i, _ in map_ordered(_pid, range(5))] == list(range(5))


@pytest.mark.parametrize("sizes, groups", [([5, 5, 5], [[0, 1], [2]]), ([20, 1, 1], [[0], [1, 2]]), ([], [])])
def test_groups_are_whole_items_of_bounded_bytes(sizes, groups):
    assert group_by_bytes(list(range(len(sizes))), sizes, 10) == groups


def test_cuts_chosen_by_the_repositories_keep_most_groups_when_one_is_inserted():
    import random

    rng = random.Random(16)
    names = [f"o/r{i:04d}" for i in range(400)]
    sizes = dict(zip(names, (rng.randint(100, 2000) for _ in names)))
    before = group_by_bytes(names, [sizes[n] for n in names], 10_000, names=names)
    grown = sorted([*names, "o/r0036a"])
    sizes["o/r0036a"] = 1500
    after = group_by_bytes(grown, [sizes[n] for n in grown], 10_000, names=grown)
    assert all(sum(sizes[n] for n in g) <= 10_000 for g in after)
    assert [n for g in after for n in g] == grown
    kept = {tuple(g) for g in before} & {tuple(g) for g in after}
    assert len(before) > 60 and len(kept) >= len(before) - 3  # only the groups around the insertion are new


def test_a_grown_and_changed_source_recomputes_only_the_groups_it_touched(tmp_path, caplog):
    import random

    rng = random.Random(7)
    corpus = tmp_path / "corpus"

    def repo(name: str, n_lines: int) -> None:
        (corpus / name).mkdir(parents=True, exist_ok=True)
        (corpus / name / "main.py").write_text("".join(f"v{rng.getrandbits(30)} = {i}\n" for i in range(n_lines)))

    for i in range(40):
        repo(f"r{i:02d}", rng.randint(40, 90))
    cfg = IngestParams(batch_bytes=4000, row_group_bytes=2000)
    work = tmp_path / "work"
    _stage(tmp_path / "first", list(directory_repositories(corpus, None)), cfg, work_dir=work)
    repo("r17b", 60)  # a new repository, listed in the middle
    repo("r30", 50)  # a changed one: its old version must go
    repos = list(directory_repositories(corpus, None))
    n_groups = len(plan_groups(repos, cfg).groups)
    with caplog.at_level("INFO"):
        _stage(tmp_path / "grown", repos, cfg, work_dir=work)
    reused = int(re.search(r"ingest: \d+ groups, (\d+) reused", caplog.text).group(1))
    assert n_groups >= 10 and reused >= n_groups - 4
    _stage(tmp_path / "plain", list(directory_repositories(corpus, None)), cfg)
    assert _output_bytes(tmp_path / "grown") == _output_bytes(tmp_path / "plain")
