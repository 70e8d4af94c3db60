"""Continued training on a real MLflow registry (SQLite in tmp) and real Prefect flow runs.

Quick: ``train.init_from`` resolved in the registry (no champion yet: scratch with a reason; a
missing version: an error; a version: its HF export downloaded). Slow: the train stage trains a
tiny model from scratch, it is registered and made champion, the data grows by new shards (the old
ones unchanged), and the stage continues from the champion: its weights (first validation loss
is the parent's last, far below a random init's), the new/old mix, the lineage tags and records;
then a data set with another tokenizer is refused.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from flows import tracking
from flows.train import CHAMPION, HF_ARTIFACT, download_version, resolve_parent, train_flow
from models.continuation import RECORD_FILE, IncompatibleParent
from models.params import TrainParams
from ray_tasks.tokenize.tokenizer import save_hf_tokenizer, train_bpe
from tests.flows.test_tracking import md5_dir, params_for, record
from tests.models.helpers import write_test_shards
from tests.paths import ROOT

SEQ, ROWS = 32, 40
TINY = {"model": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                  "intermediate_size": 256, "max_position_embeddings": 128, "sliding_window": 16},
        "micro_batch_size": 8, "max_steps": 40, "lr": 3e-3, "warmup_steps": 4, "eval_every": 10, "eval_batches": 4,
        "checkpoint_every": 20, "zero_stage": 1, "torch_threads": 1, "stage2": {"max_steps": 0}}


def _register(model_dir: str | Path, params) -> str:
    """What the evaluate stage does: the HF export logged as the pyfunc (artifact ``hf_model``) in an
    evaluate run, registered as a new version."""
    from models.pyfunc import CodeCompletionModel

    tracking.setup_mlflow(params)
    with mlflow.start_run(run_name="evaluate", tags={"starflow.stage": "evaluate"}):
        info = mlflow.pyfunc.log_model(name="model", python_model=CodeCompletionModel(),
                                       artifacts={HF_ARTIFACT: str(model_dir)},
                                       registered_model_name=params.mlflow.registered_model,
                                       pip_requirements=["torch"])
    return str(info.registered_model_version)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """One SQLite store per module (creating its tables takes seconds); each test its own model name."""
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture
def registry(in_tmp, store, monkeypatch, request):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    params = params_for(store, "continue", train=TINY)
    name = f"coder-{request.node.name[5:25]}"
    params = params.model_copy(update={"mlflow": params.mlflow.model_copy(update={"registered_model": name})})
    tracking.setup_mlflow(params)
    return params


def _with_train(params, **train):
    """``params`` with these ``train`` fields (sections given as dicts replace the whole section)."""
    return params.model_copy(update={"train": TrainParams.model_validate({**params.train.model_dump(), **train})})


def _fake_export(root: Path) -> Path:
    hf = root / "hf"
    hf.mkdir(parents=True)
    (hf / "config.json").write_text("{}")
    (hf / RECORD_FILE).write_text(json.dumps({"format": "starflow-training-data/1", "run_id": "abc"}))
    return hf


def test_no_champion_yet_means_scratch_with_the_reason_and_a_missing_version_is_an_error(registry, tmp_path):
    log, model = logging.getLogger("t"), registry.mlflow.registered_model
    champion = _with_train(registry, init_from=CHAMPION)
    assert resolve_parent(registry, log) == (None, None)  # scratch asks nothing
    for _ in range(2):  # no registered model at all, then one whose version is not champion (yet)
        parent, reason = resolve_parent(champion, log)
        assert parent is None and f"no version of '{model}' holds @champion" in reason
        with pytest.raises(ValueError, match=f"init_from: 4: registered model '{model}' has no version 4"):
            resolve_parent(_with_train(registry, init_from="4"), log)
        if not MlflowClient().search_registered_models(f"name = '{model}'"):
            _register(_fake_export(tmp_path), registry)


def test_a_version_is_downloaded_as_its_hf_export(registry, tmp_path):
    model = registry.mlflow.registered_model
    version = _register(_fake_export(tmp_path), registry)
    MlflowClient().set_registered_model_alias(model, CHAMPION, version)
    parent, reason = resolve_parent(_with_train(registry, init_from=CHAMPION), logging.getLogger("t"))
    assert reason is None and (parent.version, parent.alias, parent.record["run_id"]) == (version, CHAMPION, "abc")
    assert (parent.model_dir / "config.json").read_text() == "{}" and parent.model_id.startswith("m-")
    assert download_version(model, version, parent.model_dir.parent) == parent.model_dir  # once per version
    newer = _register(_fake_export(tmp_path / "v2"), registry)
    assert download_version(model, newer, parent.model_dir.parent).exists() and not parent.model_dir.exists()


# --------------------------------------------------------------------------- the stage, for real
def _write_data(out: Path, generations: int, tokenizer) -> None:
    """A learnable stream (a 30-token cycle in many phases) that grows at its end by ``ROWS``
    sequences per generation, in shards of ``ROWS / 2`` rows (so 2 stage-1 shards and 1 stage-2
    shard per generation): the shards of earlier generations stay byte-identical. The validation
    stream is the same in every generation."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cycle = np.tile(np.arange(100, 130), 10)

    def rows(ids):  # each row its own: the cycle's phase, shifted by 30 token ids every 30 rows
        return np.stack([np.roll(cycle, i)[:SEQ] + 30 * (i // 30) for i in ids]).astype(np.uint16)

    rows, val = rows(range(generations * ROWS)), rows(range(7, 47))
    write_test_shards(out, rows.reshape(-1), val.reshape(-1), SEQ, 300, 2 * SEQ, shard_sequences=ROWS // 2)
    save_hf_tokenizer(tokenizer, out / "tokenizer", SEQ)


@pytest.mark.slow
def test_continuing_from_the_champion_on_grown_data(registry, prefect_harness):
    model = registry.mlflow.registered_model
    shutil.copy2(ROOT / "dvc.yaml", "dvc.yaml")
    params = registry.model_copy(update={"tokenize": registry.tokenize.model_copy(
        update={"seq_len": SEQ, "seq_len_stage2": 2 * SEQ})})
    tokenizer = train_bpe(["def f(x):\n    return x\n"] * 10, 300, 1)
    shards = Path("data/tokenize")
    _write_data(shards, 1, tokenizer)
    record("tokenize", {"data/tokenize": md5_dir("gen1")})
    first = train_flow(params)
    assert first["init"] == {"from": "scratch"}
    parent_record = json.loads(Path("data/train/model", RECORD_FILE).read_text())
    version = _register("data/train/model", params)
    MlflowClient().set_registered_model_alias(model, CHAMPION, version)

    _write_data(shards, 3, tokenizer)  # grown: two generations of new shards after the old one
    record("tokenize", {"data/tokenize": md5_dir("gen3")})
    cont = _with_train(params, init_from=CHAMPION, continued={"max_steps": 6, "lr": 3e-4, "warmup_steps": 1,
                                                              "replay_fraction": 0.5},
                       stage2={"max_steps": 2, "micro_batch_size": 2, "eval_every": 2, "checkpoint_every": 2})
    second = train_flow(cont)

    # It started from the champion's weights: its first validation loss is the parent's last (same
    # weights, same validation windows), far below a random init's (about ln 300).
    assert second["stage1"]["val_loss_before"] == pytest.approx(first["val_loss_after"], rel=1e-4)
    assert first["val_loss_before"] > math.log(300) - 0.5 > first["val_loss_after"] + 2.0
    assert second["stage1"]["steps"] == 6 and second["init"] == {"from": f"{model}/{version}"}
    assert second["stage1"]["data_mix"] == {"new_shards": 4, "old_shards": 2, "new_sequences": 2 * ROWS,
                                            "old_sequences": ROWS, "replay_fraction": 0.5}
    assert second["stage2"]["data_mix"] == {"new_shards": 2, "old_shards": 1, "new_sequences": ROWS,
                                            "old_sequences": ROWS // 2, "replay_fraction": 0.5}

    # Lineage: the run's tags, its datasets, the record in the export (which the version copies).
    client = MlflowClient()
    run = client.get_run(second["mlflow_run_id"])
    mv = client.get_model_version(model, version)
    expected = {"starflow.init_from": f"{model}/{version}", "starflow.data_version": md5_dir("gen3"),
                "starflow.parent.model": model, "starflow.parent.version": version,
                "starflow.parent.alias": CHAMPION, "starflow.parent.run_id": mv.run_id,
                "starflow.parent.train_run_id": first["mlflow_run_id"],
                "starflow.parent.data_version": md5_dir("gen1")}
    assert {k: run.data.tags.get(k) for k in expected} == expected
    contexts = {(d.dataset.digest, t.value) for d in run.inputs.dataset_inputs for t in d.tags
                if t.key == "mlflow.data.context"}
    assert {(md5_dir("gen3"), "input"), (md5_dir("gen1"), "parent")} <= contexts
    assert [m.model_id for m in run.inputs.model_inputs] == [mv.source.removeprefix("models:/")]
    child = json.loads(Path("data/train/model", RECORD_FILE).read_text())
    assert child["tags"] == {k: v for k, v in run.data.tags.items() if k in expected}
    assert child["parent"]["data_version"] == parent_record["data_version"] == md5_dir("gen1")
    assert len(child["shards"]["stage1"]) == 6 and child["shards"]["stage1"][:2] == parent_record["shards"]["stage1"]
    assert json.loads(Path("metrics/train.json").read_text())["init"]["from"] == f"{model}/{version}"

    # Another tokenizer: refused before anything trains, saying that it means training from scratch.
    _write_data(shards, 3, train_bpe(["class A:\n    pass\n"] * 10, 300, 1))
    with pytest.raises(IncompatibleParent, match=r"new tokenizer means training from scratch"):
        train_flow(cont)
