"""The attribution index on a small real corpus: recall, false positives, edits, growth, removals."""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ray_tasks.attribution import portrait
from ray_tasks.attribution.params import AttributionParams
from ray_tasks.attribution.removals import repository
from ray_tasks.attribution.stage import build
from ray_tasks.attribution.trace import Attribution
from ray_tasks.tables import REJECTED_SCHEMA

PARAMS = AttributionParams()


def _source(seed: int, n_lines: int = 60) -> str:
    """A Python-looking file whose lines are distinct per seed (never-seen text for other seeds)."""
    rng = random.Random(seed)
    words = ["value", "index", "result", "buffer", "config", "token", "parser", "handler", "node", "count"]
    return "".join(f"    {rng.choice(words)}_{rng.randrange(10**6)} = compute({rng.choice(words)}, {rng.randrange(10**4)})\n"
                   for _ in range(n_lines))


def _table(contents: list[tuple[str, str, str]]) -> pa.Table:
    return pa.table({
        "repo_name": [r for r, _, _ in contents], "path": [p for _, p, _ in contents],
        "content": [c for _, _, c in contents], "length_bytes": [len(c.encode()) for _, _, c in contents],
        "sha256": [f"sha-{i}" for i in range(len(contents))], "license_type": ["permissive"] * len(contents),
        "detected_licenses": [["MIT"]] * len(contents)})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("att")
    rows = [(f"org/repo{i % 5}", f"pkg/mod{i}.py", _source(i)) for i in range(40)] + [("org/tiny", "t.py", "x = 1\n")]
    pq.write_table(_table(rows), folder / "files.parquet")
    stats = build(folder / "files.parquet", folder / "index", PARAMS, data_version="md5-abc")
    return folder, rows, stats, Attribution.open(folder / "index", PARAMS)


def test_every_file_is_found_with_its_repository_and_path(corpus):
    _, rows, stats, att = corpus
    assert stats["files"] == len(rows) and stats["data_version"] == "md5-abc"
    for repo, path, content in rows:
        report = att.trace(content)
        assert report["overlap_fraction"] == 1.0, (repo, path)
        assert (report["files"][0]["repo_name"], report["files"][0]["path"]) == (repo, path)
        assert report["files"][0]["detected_licenses"] == ["MIT"]


def test_never_seen_files_match_nothing_after_the_second_pass(corpus):
    _, _, _, att = corpus
    for seed in range(1000, 1010):
        report = att.trace(_source(seed))
        assert report["files"] == [] and report["overlap_fraction"] == 0.0


def test_a_file_with_a_fifth_of_its_lines_edited_is_still_found(corpus):
    _, rows, _, att = corpus
    repo, path, content = rows[7]
    lines = content.splitlines(keepends=True)
    for i in range(0, len(lines), 5):
        lines[i] = f"    edited_{i} = 0\n"
    report = att.trace("".join(lines))
    assert (report["files"][0]["repo_name"], report["files"][0]["path"]) == (repo, path)
    assert 0.5 < report["overlap_fraction"] < 1.0


def test_a_copied_span_is_located_in_its_file(corpus):
    _, rows, _, att = corpus
    content = rows[3][2]
    span = content[500:800]
    report = att.trace("# my code\n" + span + "# end\n")
    best = report["files"][0]
    assert best["path"] == rows[3][1]
    s = best["spans"][0]
    assert s["end"] - s["start"] >= 300 and content[s["file_start"]:s["file_start"] + 300] == span


def test_measured_false_positive_rate_is_near_the_configured_one(corpus):
    folder, rows, _, att = corpus
    indexed = {w for _, _, c in rows for w in portrait.indexed_windows(c, PARAMS.window_chars, PARAMS.stride_chars)}
    probes = [w for seed in range(2000, 2100) for w in portrait.indexed_windows(_source(seed), 50, 1)]
    probes = [w for w in probes if w not in indexed]
    rate = sum(w in att.portrait for w in probes) / len(probes)
    assert rate <= 2 * PARAMS.false_positive_rate, rate


def test_growth_adds_a_segment_and_answers_like_a_full_build(corpus, tmp_path):
    folder, rows, _, _ = corpus
    more = rows + [("org/new", "new.py", _source(500))]
    pq.write_table(_table(more), tmp_path / "files.parquet")
    stats = build(tmp_path / "files.parquet", tmp_path / "grown", PARAMS, previous=folder / "index")
    assert stats["incremental"] and stats["files_added"] == 1 and stats["segments"] == 2
    full = build(tmp_path / "files.parquet", tmp_path / "full", PARAMS)
    assert not full["incremental"] and full["segments"] == 1
    grown, whole = Attribution.open(tmp_path / "grown", PARAMS), Attribution.open(tmp_path / "full", PARAMS)
    for _, _, content in (more[0], more[-1]):
        a, b = grown.trace(content), whole.trace(content)
        assert (a["overlap_fraction"], a["files"][0]["path"]) == (b["overlap_fraction"], b["files"][0]["path"])
    assert Attribution.open(folder / "index", PARAMS).trace(more[-1][2])["files"] == []  # the old one untouched


def test_a_removed_file_forces_a_full_rebuild(corpus, tmp_path):
    folder, rows, _, _ = corpus
    pq.write_table(_table(rows[1:]), tmp_path / "files.parquet")
    stats = build(tmp_path / "files.parquet", tmp_path / "out", PARAMS, previous=folder / "index")
    assert not stats["incremental"] and stats["files"] == len(rows) - 1


def test_repository_report_names_dedup_removals_and_their_kept_copy(corpus, tmp_path):
    folder, _, _, _ = corpus
    (tmp_path / "dedup").mkdir()
    rejected = pa.table({"stage": ["dedup"], "reason": ["exact_duplicate"], "repo_name": ["org/repo1"],
                         "path": ["vendored/mod1.py"], "length_bytes": [10], "sha256": ["x"],
                         "detail": ["org/repo1/pkg/mod1.py"]}, schema=REJECTED_SCHEMA)
    pq.write_table(rejected, tmp_path / "dedup" / "rejected.parquet")
    report = repository(tmp_path, folder / "index", "org/repo1")
    assert report["in_set"] and report["files_in_set"] == 8
    assert report["removed"] == [{"stage": "dedup", "reason": "exact_duplicate", "repo_name": "org/repo1",
                                  "path": "vendored/mod1.py", "duplicate_of": "org/repo1/pkg/mod1.py"}]
    assert not repository(tmp_path, folder / "index", "org/absent")["in_set"]


def test_stride_longer_than_window_is_refused():
    with pytest.raises(ValueError, match="stride_chars"):
        AttributionParams(window_chars=20, stride_chars=30)


def test_memorised_share_counts_only_verbatim_characters(corpus):
    _, rows, _, att = corpus
    copied, fresh = rows[2][2][:400], _source(3000)[:400]
    figures = att.memorised([copied, fresh, ""])
    assert figures["chars"] == 800 and figures["samples_with_match"] == 1
    assert figures["memorised_chars"] == 400 and figures["share"] == 0.5
