"""Issue 16 in ingest: a run reuses finished repositories, not only finished groups.

A grown source computes only its new repositories, an edited file only its repository, a shrunk
one nothing (its changed group is assembled from stored rows); the outputs are byte-identical to a
cold run on the same input every time. The counts are the work folder's ``last_run.json``.
"""

import json
import random
import shutil

from ray_tasks.datasets import read_manifest
from ray_tasks.ingest.params import IngestParams
from ray_tasks.ingest.sources import directory_repositories
from ray_tasks.ingest.stage import LAST_RUN, ingest_to, plan_groups
from tests.conftest import MIT

CFG = IngestParams(batch_bytes=6000, row_group_bytes=3000)


def _repo(corpus, name: str, rng: random.Random, lines: int | None = None) -> None:
    """A repository of a module or two (1-4 KB) and an MIT LICENSE."""
    (corpus / name / "src").mkdir(parents=True, exist_ok=True)
    (corpus / name / "LICENSE").write_text(MIT)
    for f in range(rng.randint(1, 2)):
        n = lines or rng.randint(20, 60)
        (corpus / name / "src" / f"m{f}.py").write_text("".join(f"v{rng.getrandbits(30)} = {i}\n" for i in range(n)))


def _run(out, corpus, work=None, cache=None, use_ray=False) -> dict:
    """The stage on ``corpus``; the run's counts (``last_run.json``) when it had a work folder."""
    out.mkdir(parents=True)
    ingest_to(out, list(directory_repositories(corpus, None)), CFG, use_ray, work_dir=work, license_cache=cache)
    return json.loads((work / LAST_RUN).read_text()) if work is not None else {}


def _bytes(out) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _cold_equal(tmp_path, name, corpus, got) -> bool:
    """Whether ``got`` has the bytes of a run without any work folder on the same corpus."""
    _run(tmp_path / f"{name}_cold", corpus)
    return _bytes(got) == _bytes(tmp_path / f"{name}_cold")


def test_new_repositories_are_the_only_ones_computed_and_the_outputs_equal_a_cold_run(tmp_path):
    rng = random.Random(16)
    corpus, work = tmp_path / "corpus", tmp_path / "work"
    for i in range(30):
        _repo(corpus, f"r{i:02d}", rng)
    first = _run(tmp_path / "first", corpus, work)
    assert first["repositories_computed"] == 30 and first["groups"] >= 6

    new = ["r03b", "r14b", "r14c", "r27b"]  # listed among the others: they land in several groups
    for name in new:
        _repo(corpus, name, rng)
    n_groups = len(plan_groups(list(directory_repositories(corpus, None)), CFG).groups)
    grown = _run(tmp_path / "grown", corpus, work)
    new_bytes = sum(p.stat().st_size for n in new for p in (corpus / n).rglob("*") if p.is_file())
    assert (grown["repositories_computed"], grown["repositories_reused"], grown["bytes_read"]) == (4, 30, new_bytes)
    assert grown["groups"] == n_groups and grown["groups_computed"] >= 2  # groups holding a new one
    assert grown["groups_reused"] >= n_groups - 6  # the others: linked whole
    assert _cold_equal(tmp_path, "grown", corpus, tmp_path / "grown")
    # the store is the size of one output: the groups of the last run, nothing else
    assert sorted(d.name for d in work.iterdir() if d.is_dir()) == sorted(
        plan_groups(list(directory_repositories(corpus, None)), CFG, work).keys)

    shutil.rmtree(corpus / "r14b")  # a removed repository: its group is new, every member stored
    shrunk = _run(tmp_path / "shrunk", corpus, work)
    assert shrunk["repositories_computed"] == 0 and shrunk["bytes_read"] == 0
    assert shrunk["groups_assembled"] >= 1 and shrunk["groups_computed"] == 0
    assert _cold_equal(tmp_path, "shrunk", corpus, tmp_path / "shrunk")


def test_an_edited_file_recomputes_only_its_repository(tmp_path):
    rng = random.Random(15)
    corpus, work = tmp_path / "corpus", tmp_path / "work"
    for i in range(12):
        _repo(corpus, f"r{i:02d}", rng, lines=40)
    _run(tmp_path / "first", corpus, work)
    n_parts = len(read_manifest(tmp_path / "first" / "files").parts)
    again = _run(tmp_path / "again", corpus, work)
    assert (again["repositories_computed"], again["groups_reused"]) == (0, n_parts)
    assert _bytes(tmp_path / "again") == _bytes(tmp_path / "first")

    victim = corpus / "r05" / "src" / "m0.py"
    victim.write_text(victim.read_text().replace("= 3\n", "= 33\n"))  # grows: the group's cuts may move
    edited = _run(tmp_path / "edited", corpus, work)
    assert edited["repositories_computed"] == 1 and edited["repositories_reused"] == 11
    assert edited["bytes_read"] == sum(p.stat().st_size for p in (corpus / "r05").rglob("*") if p.is_file())
    assert edited["groups_computed"] == 1
    assert _cold_equal(tmp_path, "edited", corpus, tmp_path / "edited")


def test_a_killed_write_leaves_no_entry_and_a_damaged_layout_is_recomputed(tmp_path):
    rng = random.Random(3)
    corpus, work = tmp_path / "corpus", tmp_path / "work"
    for i in range(8):
        _repo(corpus, f"r{i}", rng)
    _run(tmp_path / "first", corpus, work)
    entries = sorted(d for d in work.iterdir() if d.is_dir())
    (work / f".{entries[0].name}.x.tmp").mkdir()  # what a run killed while writing a group leaves
    (entries[1] / "members.json").unlink()  # an entry of an older layout: not reusable
    again = _run(tmp_path / "again", corpus, work)
    assert not list(work.glob(".*.tmp"))
    assert again["groups_reused"] == len(entries) - 1 and again["repositories_computed"] >= 1
    assert _bytes(tmp_path / "again") == _bytes(tmp_path / "first")


def test_on_ray_only_the_missing_repositories_are_computed_with_the_same_bytes(tmp_path, ray_session):
    rng = random.Random(4)
    corpus, work, cache = tmp_path / "corpus", tmp_path / "work", tmp_path / "scancode"
    for i in range(10):
        _repo(corpus, f"r{i}", rng)
    _run(tmp_path / "first", corpus, work, cache)
    for name in ("r2b", "r7b"):
        _repo(corpus, name, rng)
    grown = _run(tmp_path / "grown", corpus, work, cache, use_ray=True)
    assert (grown["repositories_computed"], grown["repositories_reused"]) == (2, 10)
    assert grown["scancode_scans"] == 0 and grown["scancode_cache_hits"] >= 1  # the workers read the cache
    assert _cold_equal(tmp_path, "grown", corpus, tmp_path / "grown")
