"""Acceptance of the fair gate (issue 16): real MLflow registry (SQLite in tmp), real tiny models.

* Re-evaluating an unchanged model under other evaluation settings registers no new version
  and never promotes it.
* A better model (the same tiny model trained longer on the same data) is promoted, with both
  scores measured in the same evaluation: the champion's weights loaded from the registry and
  scored on the same frozen sample with the same settings.
"""

from __future__ import annotations

import json

import mlflow
import pytest
from mlflow import MlflowClient

from flows.config import parse_params
from flows.evaluate import _frozen_sample_score, register_and_gate
from flows.promotion import CHALLENGER, CHAMPION, DIGEST_TAG, weights_digest
from ray_tasks.evaluate import sample_score
from ray_tasks.evaluate.frozen_sample import ensure_sample
from tests.ray_tasks.evaluate.tiny_lm import HELD_OUT_MODULES, TRAIN_MODULES, TinyTrainer, make_tokenizer, write_files_table

pytestmark = pytest.mark.slow  # two pyfunc registrations, a registry download and six scorings: ~20 s on 2 cores

MODEL = "coder"


def settings(window: int, batch: int, perplexity_batches: int) -> dict:
    return {"mlflow": {"registered_model": MODEL},
            "evaluate": {"perplexity_batches": perplexity_batches,
                         "gate": {"sample": {"bytes": 3000, "window_tokens": window, "batch_size": batch}}}}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Two checkpoints of one tiny model (3 steps, then 25 more on the same data), a frozen
    sample of held-out files, a fresh registry."""
    tmp = tmp_path_factory.mktemp("gate")
    trainer = TinyTrainer(make_tokenizer(tmp / "tokenizer"))
    short = trainer.train(3).export(tmp / "short")
    longer = trainer.train(25).export(tmp / "longer")
    files = write_files_table(tmp / "files.parquet", {"held/out": HELD_OUT_MODULES, "train/repo": TRAIN_MODULES})
    params = parse_params(settings(64, 8, 32))
    sample, built = ensure_sample(tmp / "gate_sample.json", params.evaluate.gate.sample, files, ["held/out"])
    assert built
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment("gate", artifact_location=(tmp / "artifacts").as_uri())
    yield {"short": str(short), "longer": str(longer), "sample": sample, "exp": exp, "client": MlflowClient(uri)}
    mlflow.set_tracking_uri(None)


def evaluate(world, model: str, params) -> tuple[dict, object, str]:
    """What the evaluate stage does for the gate: score the challenger, register (or reuse), gate."""
    with mlflow.start_run(experiment_id=world["exp"]) as run:
        stats = {"frozen_sample": _frozen_sample_score(world[model], world["sample"], params.evaluate)}
        decision = register_and_gate(world["client"], params, world[model], stats, world["sample"], run.info.run_id)
    return stats, decision, run.info.run_id


def versions(client) -> list[str]:
    return sorted(str(v.version) for v in client.search_model_versions(f"name = '{MODEL}'"))


def alias(client, name: str) -> str:
    return str(client.get_model_version_by_alias(MODEL, name).version)


def test_unchanged_model_is_not_re_registered_and_a_better_one_is_promoted(world, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no dvc.yaml here: no DVC inputs to record
    client = world["client"]
    first_settings = parse_params(settings(64, 8, 32))

    stats, first, _ = evaluate(world, "short", first_settings)
    assert first.promoted and first.reason == "no champion yet" and versions(client) == ["1"]
    assert client.get_model_version(MODEL, "1").tags[DIGEST_TAG] == weights_digest(world["short"])

    # The same weights under other evaluation settings (the perplexity_batches 32 -> 16, and
    # another scoring window): no new version, not promoted; the decision says it is the same model.
    stats, again, run_id = evaluate(world, "short", parse_params(settings(32, 2, 16)))
    assert stats["registered_model"] == {"name": MODEL, "version": 1, "alias": CHALLENGER, "reused": True,
                                         "weights_sha256": weights_digest(world["short"])}
    assert not again.promoted and again.outcome == "unchanged" and versions(client) == ["1"]
    assert client.get_run(run_id).data.tags["promotion.decision"] == "unchanged"

    # Trained longer on the same data: a new version, the champion scored in the same run.
    stats, better, run_id = evaluate(world, "longer", first_settings)
    assert versions(client) == ["1", "2"] and better.promoted and alias(client, CHAMPION) == "2"
    assert better.champion_version == "1" and better.challenger_score == stats["frozen_sample"]["bits_per_byte"]
    sample = world["sample"]
    champion_now = sample_score.bits_per_byte(world["short"], sample.documents, 64, 8)["bits_per_byte"]
    assert better.champion_score == pytest.approx(champion_now, rel=1e-9)  # same data, same settings
    assert better.challenger_score < better.champion_score - first_settings.evaluate.gate.margin
    evidence = stats["promotion"]
    assert evidence["scored_in_run"] == run_id and evidence["evaluation_data"]["md5"] == sample.md5
    assert evidence["evaluation_data"]["version"] == 1 and evidence["settings"]["sample"]["window_tokens"] == 64
    assert evidence["champion_weights_sha256"] == weights_digest(world["short"])
    tags = client.get_model_version(MODEL, "2").tags
    assert tags["promotion.decision"] == "promoted" and tags["promotion.data_md5"] == sample.md5
    assert float(tags["promotion.champion_score"]) == pytest.approx(better.champion_score, rel=1e-5)
    assert json.loads(tags["promotion.evidence"])["scored_in_run"] == run_id

    # The old weights again, under the settings of the first run: still version 1, scored against
    # champion 2 in the same run, and worse: not promoted, nothing registered.
    stats, old, _ = evaluate(world, "short", first_settings)
    assert stats["registered_model"]["version"] == 1 and versions(client) == ["1", "2"]
    assert not old.promoted and old.outcome == "rejected" and alias(client, CHAMPION) == "2"
    assert old.champion_score == pytest.approx(better.challenger_score, rel=1e-9)
    assert alias(client, CHALLENGER) == "1"
