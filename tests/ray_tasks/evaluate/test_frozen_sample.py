"""The frozen gate sample (drawn once from held-out repositories, kept as the data grows) and its scorer."""

from __future__ import annotations

import hashlib
import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ray_tasks.evaluate.frozen_sample import draw, ensure_sample, load_sample, repos_in_training
from ray_tasks.evaluate.params import GateSampleParams


def files_table(path, rows: list[tuple[str, str, str]], row_group_size: int = 3):
    pq.write_table(pa.table({"repo_name": [r[0] for r in rows], "path": [r[1] for r in rows],
                             "content": [r[2] for r in rows],
                             "length_bytes": [len(r[2].encode()) for r in rows]}), path, row_group_size=row_group_size)
    return path


ROWS = [(f"val/{r}", f"f{i}.py", f"# {r} {i}\n" + "x = 1\n" * (5 + i)) for r in "ab" for i in range(6)]
ROWS += [("train/c", "big.py", "y = 2\n" * 100), ("val/a", "huge.py", "z = 3\n" * 400)]


def test_draw_takes_whole_held_out_files_in_hash_order_up_to_the_budget(tmp_path):
    params = GateSampleParams(bytes=200, max_file_bytes=1000)
    docs = draw(files_table(tmp_path / "f.parquet", ROWS), ["val/a", "val/b"], params)
    assert {d["repo_name"] for d in docs} <= {"val/a", "val/b"} and "huge.py" not in {d["path"] for d in docs}
    sizes = [len(d["content"].encode()) for d in docs]
    assert sum(sizes) >= 200 and sum(sizes[:-1]) < 200  # stops at the first file that reaches the budget
    # Independent of how the rows are stored: reversed rows, other row groups, the same sample.
    again = draw(files_table(tmp_path / "r.parquet", ROWS[::-1], 1), ["val/b", "val/a"], params)
    assert again == docs
    assert draw(tmp_path / "f.parquet", ["val/a", "val/b"], GateSampleParams(bytes=200, max_file_bytes=1000, seed=1)) != docs


def test_sample_is_kept_when_the_data_grows_and_rebuilt_on_request(tmp_path):
    params = GateSampleParams(bytes=150, max_file_bytes=1000)
    first, built = ensure_sample(tmp_path / "s.json", params, files_table(tmp_path / "v1.parquet", ROWS), ["val/a"])
    assert built and first.md5 == hashlib.md5((tmp_path / "s.json").read_bytes()).hexdigest()
    assert first.built_from["val_repositories"] == ["val/a"] and first.summary()["version"] == 1

    # The data grew (new repositories, new files in the held-out one; the split moved): same sample.
    grown = ROWS + [(f"val/new{i}", "n.py", "w = 4\n" * 3) for i in range(20)] + [("val/a", "g0.py", "q = 0\n")]
    same, built = ensure_sample(tmp_path / "s.json", params, files_table(tmp_path / "v2.parquet", grown),
                                ["val/a", *(f"val/new{i}" for i in range(20))])
    assert not built and same.md5 == first.md5 and same.documents == first.documents
    # Scoring settings are not the sample's identity.
    assert not ensure_sample(tmp_path / "s.json", params.model_copy(update={"window_tokens": 64}), "unread", [])[1]

    bumped, built = ensure_sample(tmp_path / "s.json", params.model_copy(update={"version": 2}), tmp_path / "v2.parquet",
                                  ["val/a", *(f"val/new{i}" for i in range(20))])
    assert built and bumped.spec["version"] == 2 and bumped.md5 != first.md5
    assert load_sample(tmp_path / "s.json").md5 == bumped.md5
    assert repos_in_training(bumped, ["val/new3", "train/c"]) == (["val/new3"] if "val/new3" in bumped.repos else [])


def test_bad_sample_and_empty_draw_fail_clearly(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="expected 'starflow-gate-sample/1'"):
        load_sample(tmp_path / "s.json")
    (tmp_path / "t.json").write_text("{half")
    with pytest.raises(ValueError, match="not a gate sample"):
        load_sample(tmp_path / "t.json")
    with pytest.raises(ValueError, match="no file of the 1 validation repositories"):
        ensure_sample(tmp_path / "u.json", GateSampleParams(max_file_bytes=10), files_table(tmp_path / "f.parquet", ROWS),
                      ["val/a"])
    assert not (tmp_path / "u.json").exists()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A randomly initialised tiny Starcoder2 with a real BPE tokenizer (no training needed here)."""
    from tests.ray_tasks.evaluate.tiny_lm import TinyTrainer, make_tokenizer

    tmp = tmp_path_factory.mktemp("tiny")
    return TinyTrainer(make_tokenizer(tmp / "tok")).export(tmp / "model")


@pytest.mark.slow  # torch + transformers imports and a tokenizer: ~8 s on 2 busy cores
def test_every_content_token_is_scored_once_whatever_the_window(tiny_model):
    from ray_tasks.evaluate import sample_score

    docs = [{"content": "def f(x):\n    return x + 1\n" * 8}, {"content": "import os\nprint(os.sep)\n" * 5}]
    ids, content, n_bytes = sample_score.tokenized_stream(tiny_model, docs)
    assert n_bytes == sum(len(d["content"].encode()) for d in docs) and not content[0] and ids[0] == 0
    results = [sample_score.bits_per_byte(tiny_model, docs, w, b) for w, b in ((7, 3), (64, 2), (10_000, 1))]
    assert {r["tokens"] for r in results} == {sum(content)}
    assert results[2]["window_tokens"] == 256  # capped at the model's max_position_embeddings
    # A random model is near uniform over the vocabulary: about log2(V) bits per token.
    vocab = 320
    per_token = [r["bits_per_byte"] * r["bytes_per_token"] for r in results]
    assert all(abs(x - math.log2(vocab)) < 1.0 for x in per_token)
