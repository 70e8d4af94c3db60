"""Continued training without DeepSpeed: the new/old split by shard identity, the replay mix,
the parent checks (tokenizer, shape), the continued runs' settings and fingerprints."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from models.continuation import (IncompatibleParent, check_compatible, data_mix, read_record, shard_entries,
                                 tokenizer_digest, training_record)
from models.data import ShardedArray, TokenShards, mixed_batch, random_batch
from models.params import ModelShape, TrainParams
from models.presets import starcoder2_config
from models.run import Parent, stage_runs
from ray_tasks.tokenize.tokenizer import load_tokenizer, save_hf_tokenizer, train_bpe
from tests.models.helpers import write_test_shards

SHAPE = ModelShape(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                   intermediate_size=256, max_position_embeddings=128, sliding_window=16, rope_theta=100_000.0,
                   tie_word_embeddings=True)
SEQ, ROWS = 16, 10
"""Sequence length and rows per shard file of the test data."""


def _tokenizer(texts: list[str]):
    return train_bpe(texts * 10, 300, 1)


def _data(out, generations: int, tokenizer=None):
    """Data grown ``generations`` times: each generation appends 2 shards' worth of rows to the
    training stream, so the earlier generations' shards are unchanged byte for byte."""
    out.mkdir(parents=True)
    rng = np.random.default_rng(7)
    train = rng.integers(40, 300, size=generations * 2 * ROWS * SEQ)
    write_test_shards(out, train, rng.integers(40, 300, size=4 * SEQ), SEQ, 300, 2 * SEQ, shard_sequences=ROWS)
    save_hf_tokenizer(tokenizer or _tokenizer(["def f(x):\n    return x\n"]), out / "tokenizer", SEQ)
    return out


def _parent(out, data, shape=SHAPE, generations_seen=None):
    """A parent model folder as the export makes it: config, tokenizer files, training record."""
    out.mkdir()
    starcoder2_config(shape, 300).save_pretrained(out)
    for f in (data / "tokenizer").iterdir():
        shutil.copy2(f, out / f.name)
    (out / "training_data.json").write_text(json.dumps(training_record(data, "md5-parent.dir", run_id="r1")))
    return out


def test_shards_that_grew_at_the_end_split_into_old_and_new_by_content(tmp_path):
    old_data, grown = _data(tmp_path / "g1", 1), _data(tmp_path / "g2", 2)
    record = training_record(old_data, "md5-1.dir")
    assert [len(record["shards"][s]) for s in ("stage1", "stage2")] == [2, 1]
    mix = data_mix(grown, "stage1", record, 0.25)
    # The first two shards are byte-identical in both versions: old; the two appended ones: new.
    assert mix.old == ["train.stage1.00000.npy", "train.stage1.00001.npy"]
    assert mix.new == ["train.stage1.00002.npy", "train.stage1.00003.npy"]
    assert data_mix(grown, "stage2", record, 0.25).old == ["train.stage2.00000.npy"]
    # Identity is content, not the file name: a rewritten shard is new.
    np.save(grown / "train.stage1.00000.npy", np.zeros((ROWS, SEQ), np.uint16))
    assert data_mix(grown, "stage1", record, 0.25).old == ["train.stage1.00001.npy"]
    # A manifest's own sha256 is the identity when it gives one; a generation is recorded.
    manifest = json.loads((grown / "manifest.json").read_text())
    manifest["splits"]["train"]["shards"]["stage1"][1].update(sha256="abc", generation="v2")
    (grown / "manifest.json").write_text(json.dumps(manifest))
    entry = shard_entries(grown, "stage1")[1]
    assert (entry["id"], entry["generation"]) == ("abc", "v2")
    # No record (a model from before records existed): everything is new.
    assert data_mix(grown, "stage1", None, 0.25).old == []


def _pools():
    """Rows tagged by pool in column 0 (old 1, new 2 and 3) and numbered in column 1."""
    def pool(tag, n):
        rows = np.full((n, 4), tag, np.uint16)
        rows[:, 1] = np.arange(n)
        return rows

    return ShardedArray([pool(2, 30), pool(3, 20)]), ShardedArray([pool(1, 50)])


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.5, 1.0])
def test_the_replay_share_of_rows_is_the_fraction_and_each_batch_the_nearest_count(fraction):
    new, old = _pools()
    batches = [mixed_batch(new, old, fraction, 8, seed=3, step=s) for s in range(400)]
    old_rows = [int((b[:, 0] == 1).sum()) for b in batches]
    assert set(old_rows) <= {int(np.floor(fraction * 8)), int(np.ceil(fraction * 8))}
    assert np.mean(old_rows) / 8 == pytest.approx(fraction, abs=0.02)
    new_rows = np.concatenate([b[:, 0].numpy() for b in batches])
    if fraction < 1:  # both new shards are drawn from, in proportion to their rows
        share3 = (new_rows == 3).sum() / (new_rows != 1).sum()
        assert share3 == pytest.approx(20 / 50, abs=0.05)


def test_the_mix_is_seeded_and_split_across_ranks_like_one_rank():
    new, old = _pools()
    one = mixed_batch(new, old, 0.25, 8, seed=1, step=5)
    assert np.array_equal(one, mixed_batch(new, old, 0.25, 8, seed=1, step=5))
    two = [mixed_batch(new, old, 0.25, 4, seed=1, step=5, rank=r, world=2) for r in range(2)]
    assert sorted(map(tuple, np.concatenate(two).tolist())) == sorted(map(tuple, one.tolist()))
    assert not all(np.array_equal(mixed_batch(new, old, 0.25, 8, seed=1, step=s), one) for s in range(6, 9))
    # A missing pool: every row from the other.
    assert set(mixed_batch(None, old, 0.25, 8, 1, 5)[:, 0].tolist()) == {1}
    assert 1 not in mixed_batch(new, None, 0.25, 8, 1, 5)[:, 0].tolist()


def test_scratch_batches_are_unchanged():
    """The scratch path still draws with random_batch: the rows the golden loss curve was made with."""
    arr = ShardedArray([np.arange(200, dtype=np.uint16).reshape(50, 4)])
    rows = np.sort(np.random.default_rng([0, 3]).integers(0, 50, size=8))
    assert np.array_equal(random_batch(arr, 8, 0, 3), arr[rows].astype(np.int64))


def test_a_new_tokenizer_means_training_from_scratch(tmp_path):
    data = _data(tmp_path / "data", 1)
    parent = _parent(tmp_path / "parent", data)
    check_compatible(parent, data, SHAPE, "coder v1")  # same tokenizer and shape: fine
    other = _data(tmp_path / "other", 1, tokenizer=_tokenizer(["class A:\n    pass\n"]))
    assert tokenizer_digest(other / "tokenizer" / "tokenizer.json") != tokenizer_digest(parent / "tokenizer.json")
    with pytest.raises(IncompatibleParent, match=r"coder v1.*tokenizer.*training from scratch \(train.init_from: scratch\)"):
        check_compatible(parent, other, SHAPE, "coder v1")
    # The way to keep it: tokenize with the parent's folder as tokenize.tokenizer_path, which the
    # tokenize stage loads and saves again (load_tokenizer, save_hf_tokenizer).
    shutil.rmtree(other / "tokenizer")
    save_hf_tokenizer(load_tokenizer(parent), other / "tokenizer", SEQ)
    check_compatible(parent, other, SHAPE, "coder v1")
    # The digest is the tokenizer's content: the same file re-formatted is the same tokenizer.
    tok = parent / "tokenizer.json"
    tok.write_text(json.dumps(json.loads(tok.read_text()), indent=4))
    check_compatible(parent, data, SHAPE, "coder v1")


def test_a_parent_of_another_shape_is_refused_but_rope_and_context_may_differ(tmp_path):
    data = _data(tmp_path / "data", 1)
    parent = _parent(tmp_path / "parent", data, shape=SHAPE.replace(num_hidden_layers=3))
    with pytest.raises(IncompatibleParent, match="num_hidden_layers: parent 3, this run 2"):
        check_compatible(parent, data, SHAPE, "coder v1")
    stage2_shaped = _parent(tmp_path / "p2", data, shape=SHAPE.replace(rope_theta=1e6, max_position_embeddings=512))
    check_compatible(stage2_shaped, data, SHAPE, "coder v1")


def test_continued_runs_take_the_continued_schedule_and_the_mix(tmp_path):
    old_data, grown = _data(tmp_path / "g1", 1), _data(tmp_path / "g2", 2)
    parent = _parent(tmp_path / "parent", old_data)
    params = TrainParams(init_from="champion", max_steps=50, lr=3e-3, warmup_steps=5,
                         continued={"max_steps": 7, "lr": 1e-4, "warmup_steps": 2, "replay_fraction": 0.3},
                         stage2={"max_steps": 3})
    s1, s2 = stage_runs(params, grown, tmp_path / "work", 2 * SEQ,
                        parent=Parent(model_dir=str(parent), record=read_record(parent)))
    assert (s1.hparams.max_steps, s1.hparams.lr, s1.hparams.warmup_steps) == (7, 1e-4, 2)
    assert s1.init_from == str(parent) and s1.mix.replay_fraction == 0.3 and len(s1.mix.new) == 2
    assert s2.hparams.max_steps == 3 and s2.init_from.endswith("stage1_export") and s2.mix.old == [
        "train.stage2.00000.npy"]
    assert TokenShards(grown, "stage2").train_files(s2.mix.old).shape == (ROWS, 2 * SEQ)
    # The mix is part of what a checkpoint must match; the continued settings do not touch scratch runs.
    other = stage_runs(params.model_copy(update={"continued": params.continued.model_copy(
        update={"replay_fraction": 0.5})}), grown, tmp_path / "work", 2 * SEQ,
        parent=Parent(model_dir=str(parent), record=read_record(parent)))
    assert other[0].fingerprint() != s1.fingerprint()
    scratch = stage_runs(TrainParams(max_steps=50), grown, tmp_path / "work", 2 * SEQ)[0]
    assert scratch.mix is None and scratch.init_from is None
    assert scratch.fingerprint() == stage_runs(TrainParams(max_steps=50, continued={"lr": 1.0}), grown,
                                               tmp_path / "work", 2 * SEQ)[0].fingerprint()


def test_init_from_accepts_scratch_champion_or_a_version():
    from pydantic import ValidationError

    assert TrainParams(init_from=3).init_from == "3" and TrainParams(init_from="champion").continues
    assert not TrainParams().continues
    for bad in ("chmpion", "0", "-1", "latest"):
        with pytest.raises(ValidationError, match="init_from"):
            TrainParams(init_from=bad)
