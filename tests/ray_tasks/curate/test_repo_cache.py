"""The curate stage's per-repository cache (issue 16): a part that changed costs only its new or
changed repositories, and gives byte for byte what curating it all gives, row groups included.

The reference is the stage as it was before the cache (``_reference_part``: ``curate_table`` on
each batch, kept rows written in row groups cut on their ``nbytes``), kept here to compare bytes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import ray_tasks.curate.parts as parts_mod
import ray_tasks.datasets as datasets
from ray_tasks.curate.filters import annotate
from ray_tasks.curate.parts import curate_dataset
from ray_tasks.curate.repo_cache import rows_digest
from ray_tasks.curate.stage import ANNOTATIONS, build_steps, curate_rows, curate_table, replay
from tests.ray_tasks.curate.test_parts import CFG, _files, _outputs, write_dataset

ROW_GROUP_BYTES = 3000
"""Small enough that a part's kept rows make several row groups (the cut the cache must keep)."""


def _code(name: str, n: int) -> str:
    return f'"""Module {name}."""\n\n' + "".join(f"def f_{name}_{i}(x):\n    return x * {i} + {len(name)}\n\n" for i in range(n))


def _repo(name: str, n_files: int, salt: str = "") -> list[dict]:
    rows = []
    for j in range(n_files):
        text = _code(f"{name.replace('/', '_')}{salt}{j}", 3 + j)
        rows.append({"repo_name": name, "path": f"pkg/m{j}.py", "content": text, "length_bytes": len(text.encode()),
                     "sha256": hashlib.sha256(text.encode()).hexdigest(), "license_type": "permissive"})
    return rows


def _with_nulls(table: pa.Table) -> pa.Table:
    """Columns that are null in some rows, as real inputs have them (stars, a given language, the
    licenses found): the layouts a cached batch must rebuild (validity bitmaps) and the digest must
    see through."""
    ids = [int(sha[:8], 16) for sha in table.column("sha256").to_pylist()]  # a file's own, wherever it lies
    stars = pa.array([None if i % 3 else i % 1000 for i in ids], pa.int64())
    language = pa.array(["Python" if i % 4 == 1 else None for i in ids], pa.string())
    licenses = pa.array([["MIT"] if i % 5 == 0 else None if i % 5 == 1 else [] for i in ids], pa.list_(pa.string()))
    return table.append_column("star_events_count", stars).append_column("language", language) \
        .append_column("detected_licenses", licenses)


def _sorted(rows: list[dict]) -> pa.Table:
    return _with_nulls(pa.Table.from_pylist(sorted(rows, key=lambda r: r["repo_name"])))


@pytest.fixture(scope="module")
def base_rows(corpus) -> list[dict]:
    """The shared test corpus (its bad files, a PII file, a contaminated one) and repositories
    of 1 to 13 files: with ``batch_size`` 5 some span several batches."""
    rows = _files(corpus).to_pylist()
    for k, n in enumerate((1, 13, 4, 7, 2, 9)):
        rows += _repo(f"org/r{k}", n)
    return rows


NEW = {"org/r0a": 3, "org/r2a": 11, "pii2": 1}
"""Repositories added in the middle of the listing (name order), to grown parts."""


def _grown(base_rows: list[dict]) -> list[dict]:
    return base_rows + [r for name, n in NEW.items() for r in _repo(name, n)]


def _reference_part(address: str, cfg, schema: pa.Schema, dest, row_group_bytes: int) -> datasets.PartInfo:
    """The stage's part before the repository cache, for its bytes."""
    steps = build_steps(cfg)
    buffer = []
    with datasets.PartStream(dest, 0, schema) as out:
        for batch in datasets.open_part(address).iter_batches(batch_size=cfg.batch_size):
            kept = curate_table(pa.Table.from_batches([batch]), steps, cfg).kept
            buffer.append(kept.select(schema.names).cast(schema))
            if sum(t.nbytes for t in buffer) >= row_group_bytes:
                out.write(pa.concat_tables(buffer))
                buffer = []
        if buffer:
            out.write(pa.concat_tables(buffer))
    return out.info


def _run(src, out, work):
    run = curate_dataset(src, out, CFG, use_ray=False, work=work)
    return run, json.loads((work / "last_run.json").read_text())


def test_replay_rebuilds_curate_tables_result_and_layout(base_rows):
    """``replay`` from results computed on other tables (repositories, cut anywhere) gives what
    ``curate_table`` gives on the batch: tables, account, and each column's layout (a validity
    bitmap or not: ``nbytes`` decides where the output's row groups are cut), PII on and off."""
    table = _sorted(base_rows)
    probe = table.slice(0, 3)
    added = [c for c in annotate(probe).column_names if c not in probe.column_names]
    assert added == [c for c in ANNOTATIONS if c not in probe.column_names] and "language" in ANNOTATIONS
    for cfg in (CFG, CFG.model_copy(update={"pii": CFG.pii.model_copy(update={"enabled": False})})):
        steps = build_steps(cfg)
        rows = pa.concat_tables([curate_rows(table.slice(i, 7), steps, cfg) for i in range(0, table.num_rows, 7)])
        seen = {"pii": 0, "contaminated": 0, "rejected": 0}
        for start in range(0, table.num_rows, cfg.batch_size):
            batch = table.slice(start, cfg.batch_size)
            want = curate_table(batch, steps, cfg)
            got = replay(batch, rows.slice(start, batch.num_rows), steps, cfg)
            assert got.kept.equals(want.kept) and got.kept.nbytes == want.kept.nbytes
            assert [c.chunk(0).buffers()[0] is None for c in got.kept.columns if c.num_chunks] == \
                   [c.chunk(0).buffers()[0] is None for c in want.kept.columns if c.num_chunks]
            assert got.rejected.equals(want.rejected) and got.contamination.equals(want.contamination)
            assert json.dumps(got.stats, sort_keys=True) == json.dumps(want.stats, sort_keys=True)
            seen["pii"] += want.stats["pii_files"]
            seen["contaminated"] += want.stats["files_contaminated"]
            seen["rejected"] += want.stats["files_rejected"]
        assert seen["contaminated"] == 1 and seen["rejected"] > 0 and (seen["pii"] > 0) == cfg.pii.enabled
    with pytest.raises(ValueError, match="one row per file"):
        replay(table.slice(0, 2), rows.slice(0, 3), steps, CFG)


def test_rows_digest_sees_values_not_layout(base_rows):
    table = _sorted(base_rows)
    repo = table.slice(10, 9)
    copies = [repo, pa.concat_tables([table.slice(10, 4), table.slice(14, 5)]), pa.Table.from_pylist(repo.to_pylist(), repo.schema)]
    assert len({rows_digest(t) for t in copies}) == 1
    stars = repo.column("star_events_count").to_pylist()
    changed = [repo.set_column(repo.schema.get_field_index("content"), "content",
                               pa.array([c + " " if i == 4 else c for i, c in enumerate(repo.column("content").to_pylist())])),
               repo.set_column(repo.schema.get_field_index("star_events_count"), "star_events_count",
                               pa.array([0 if s is None else s for s in stars], pa.int64())),
               repo.set_column(repo.schema.get_field_index("detected_licenses"), "detected_licenses",
                               pa.array([None] * repo.num_rows, pa.list_(pa.string()))),
               repo.slice(1)]
    assert len({rows_digest(t) for t in [repo, *changed]}) == 1 + len(changed)


def test_a_grown_part_curates_only_its_new_repositories(base_rows, tmp_path, monkeypatch):
    """New repositories land in the middle of both parts: each part is curated again, but only
    the new repositories are; the output is byte for byte a cold run's and the stage before the
    cache's (row groups included); the store holds exactly the run's repositories."""
    monkeypatch.setattr(parts_mod, "KEPT_ROW_GROUP_BYTES", ROW_GROUP_BYTES)
    old, grown = _sorted(base_rows), _sorted(_grown(base_rows))
    work = tmp_path / "work"
    n_old = len(set(old.column("repo_name").to_pylist()))
    _, first = _run(write_dataset(old, tmp_path / "old", 2), tmp_path / "a", work)
    assert first["repositories"] == first["repositories_computed"] == n_old and first["parts_computed"] == 2
    (work / "repos" / "ab").mkdir(exist_ok=True)
    (work / "repos" / "ab" / ".abc.parquet.x.tmp").write_bytes(b"a killed write")

    src = write_dataset(grown, tmp_path / "grown", 2)
    run, again = _run(src, tmp_path / "b", work)
    assert again == {"parts": 2, "parts_reused": 0, "parts_computed": 2, "repositories": n_old + len(NEW),
                     "repositories_computed": len(NEW), "repositories_reused": n_old}
    assert (run.repositories, run.repositories_computed) == (n_old + len(NEW), len(NEW))
    entries = sorted(p.name for p in (work / "repos").rglob("*") if p.is_file())
    assert len(entries) == n_old + len(NEW) and all(not n.startswith(".") for n in entries)  # the leftover pruned

    _run(src, tmp_path / "cold", tmp_path / "cold-work")
    assert _outputs(tmp_path / "b") == _outputs(tmp_path / "cold")
    kept_parts = datasets.part_paths(tmp_path / "b" / "files")
    schema = datasets.read_manifest(tmp_path / "b" / "files").schema
    for k, address in enumerate(datasets.part_paths(src)):
        _reference_part(str(address), CFG, schema, tmp_path / f"ref{k}", ROW_GROUP_BYTES)
        ref = tmp_path / f"ref{k}" / datasets.part_name(0)
        assert pq.read_metadata(ref).num_row_groups > 1
        assert ref.read_bytes() == Path(kept_parts[k]).read_bytes()

    # The same input again: every part from the work folder, nothing curated.
    _, same = _run(src, tmp_path / "c", work)
    assert same["parts_reused"] == 2 and same["repositories_computed"] == 0 and same["repositories"] == n_old + len(NEW)


def test_an_edited_file_recomputes_only_its_repository(base_rows, tmp_path, monkeypatch):
    monkeypatch.setattr(parts_mod, "KEPT_ROW_GROUP_BYTES", ROW_GROUP_BYTES)
    table = _sorted(base_rows)
    work = tmp_path / "work"
    _, first = _run(write_dataset(table, tmp_path / "in", 2), tmp_path / "a", work)
    names, contents = table.column("repo_name").to_pylist(), table.column("content").to_pylist()
    i = names.index("org/r1") + 6  # a file in the middle of a repository spanning batches
    contents[i] = contents[i].replace("return x", 'return "ops.team@fastmail.fm", x', 1)  # now with PII
    edited = table.set_column(table.schema.get_field_index("content"), "content", pa.array(contents))
    src = write_dataset(edited, tmp_path / "edited", 2)
    _, again = _run(src, tmp_path / "b", work)
    assert again["parts_computed"] == 1 and again["parts_reused"] == 1
    assert again["repositories_computed"] == 1 and again["repositories"] == first["repositories"]
    _run(src, tmp_path / "cold", tmp_path / "cold-work")
    assert _outputs(tmp_path / "b") == _outputs(tmp_path / "cold")
    stats = json.loads((tmp_path / "b" / "stats.json").read_text())
    assert stats["pii_email"] == json.loads((tmp_path / "a" / "stats.json").read_text())["pii_email"] + 1


def test_a_killed_part_keeps_its_finished_repositories(base_rows, tmp_path, monkeypatch):
    """Repositories are stored as they finish: a part killed mid-way resumes from them."""
    table = _sorted(base_rows)
    src = write_dataset(table, tmp_path / "in", 1)
    work = tmp_path / "work"
    real, calls = parts_mod.curate_rows, []

    def dies_at_the_fourth(files, *a):
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        calls.append(files.num_rows)  # the first is the 0-row probe for the results' schema
        return real(files, *a)

    monkeypatch.setattr(parts_mod, "curate_rows", dies_at_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        curate_dataset(src, tmp_path / "a", CFG, use_ray=False, work=work)
    monkeypatch.setattr(parts_mod, "curate_rows", real)
    assert not list((work / "parts").glob("[!.]*"))  # the part did not finish
    stored = len(list((work / "repos").rglob("*.arrow")))
    n = len(set(table.column("repo_name").to_pylist()))
    assert 2 <= stored < n
    _, resumed = _run(src, tmp_path / "b", work)
    assert resumed["repositories_computed"] == n - stored and resumed["repositories"] == n
    _run(src, tmp_path / "cold", tmp_path / "cold-work")
    assert _outputs(tmp_path / "b") == _outputs(tmp_path / "cold")


def test_interleaved_repositories_are_units_of_their_runs(base_rows, tmp_path):
    """Rows of a repository split by another's (not what ingest writes, but any dataset may): each
    run is a unit, and the output is still the stage's."""
    table = _sorted(base_rows)
    order = sorted(range(table.num_rows), key=lambda i: (i % 2, i))
    mixed = table.take(pa.array(order))
    root = tmp_path / "in"
    datasets.write_manifest(root, [datasets.write_part(root, 0, mixed)], mixed.schema)
    run, counts = _run(root, tmp_path / "b", tmp_path / "work")
    runs = 1 + int(pc.sum(pc.not_equal(mixed.column("repo_name")[1:], mixed.column("repo_name")[:-1])).as_py())
    assert counts["repositories"] == runs > len(set(table.column("repo_name").to_pylist()))
    schema = datasets.read_manifest(tmp_path / "b" / "files").schema
    _reference_part(str(root / datasets.part_name(0)), CFG, schema, tmp_path / "ref", parts_mod.KEPT_ROW_GROUP_BYTES)
    assert (tmp_path / "ref" / datasets.part_name(0)).read_bytes() == (tmp_path / "b" / "files" / datasets.part_name(0)).read_bytes()
