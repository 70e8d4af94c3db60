"""Compressors beside the model (ray_tasks/evaluate/compressors.py, flows/evaluate.py): same bytes, real figures."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import math

import mlflow
import pytest
import zstandard

from ray_tasks.evaluate.compressors import COMPRESSORS, compressed_bits_per_byte
from ray_tasks.evaluate.params import EvaluateParams
from tests.models.test_bits_per_byte import TEXT, tiny_lm


def test_each_compressor_round_trips_and_repetition_compresses():
    data = TEXT.encode()
    decompress = {"gzip": gzip.decompress, "bzip2": bz2.decompress, "xz": lzma.decompress,
                  "zstd": zstandard.ZstdDecompressor().decompress}
    for name, compress in COMPRESSORS.items():
        assert decompress[name](compress(data)) == data, name
    figures = compressed_bits_per_byte(data)
    assert set(figures) == {"gzip", "bzip2", "xz", "zstd"}
    assert all(0 < v < 8 for v in figures.values()), figures
    # Ten copies hold little more information than one: every compressor must see that.
    tenfold = compressed_bits_per_byte(data * 10)
    assert all(tenfold[k] < figures[k] / 3 for k in figures), (figures, tenfold)
    with pytest.raises(ValueError, match="no bytes"):
        compressed_bits_per_byte(b"")


def test_stage_scores_model_and_compressors_on_the_same_bytes(in_tmp):
    from flows.evaluate import _bits_per_byte

    tiny_lm(in_tmp / "data")
    (in_tmp / "data" / "train").mkdir()
    (in_tmp / "data" / "model").rename(in_tmp / "data" / "train" / "model")
    mlflow.set_tracking_uri(f"sqlite:///{in_tmp / 'mlflow.db'}")
    try:
        # An experiment of this store: an earlier test may have left another store's active.
        mlflow.set_experiment("bits-per-byte-test")
        with mlflow.start_run() as run:
            stats = _bits_per_byte("data/train/model", 4, EvaluateParams(bits_per_byte_tokens=40))
        artifacts = [a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)]
    finally:
        mlflow.set_tracking_uri(None)
    scored = stats["bits_per_byte_scored"]
    # The model scored 3 windows of 15 predicted tokens: the text they spell is a prefix of TEXT.
    assert scored["tokens"] == 45
    same = TEXT.encode()[: scored["bytes"]]
    assert scored["sha256"] == hashlib.sha256(same).hexdigest()
    assert stats["compressors"] == compressed_bits_per_byte(same)
    assert stats["bits_per_byte"] == pytest.approx(scored["nats"] / math.log(2) / scored["bytes"])
    assert "bits_per_byte.png" in artifacts
