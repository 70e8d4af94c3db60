"""The promotion gate's registry side on a real MLflow registry (SQLite in tmp) and a real Prefect artifact.

The scoring of both models in one run is tests/flows/test_gate_fair.py (real tiny models); here the
registry moves: weights digests, reuse of a version, the alias, the recorded decision.
"""

from __future__ import annotations

import json
import re

import mlflow
import pytest
from mlflow import MlflowClient

from flows.promotion import (CHALLENGER, CHAMPION, DIGEST_TAG, find_version, mark_challenger, register_or_reuse,
                             run_gate, weights_digest)
from ray_tasks.evaluate.params import GateParams


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite store per module (creating its tables takes seconds); a model name per test."""
    tmp = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment("gate", artifact_location=(tmp / "artifacts").as_uri())
    yield uri, exp
    mlflow.set_tracking_uri(None)


@pytest.fixture
def registry(store, request):
    """(client, experiment, model name): a fresh registered model for this test."""
    uri, exp = store
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    name = re.sub(r"[^\w-]", "-", request.node.name)[:60]
    client.create_registered_model(name)
    return client, exp, name


def hf_folder(path, weights: bytes, config: str = '{"rope_theta": 10000}'):
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.safetensors").write_bytes(weights)
    (path / "config.json").write_text(config)
    (path / "tokenizer.json").write_text("{}")
    return path


def registered(client: MlflowClient, exp: str, name: str, model_dir) -> tuple[str, str]:
    """A version of ``model_dir`` as the evaluate stage leaves it: from a run, digest tag, alias challenger."""
    with mlflow.start_run(experiment_id=exp) as run:
        pass
    version = str(client.create_model_version(name, source=f"runs:/{run.info.run_id}/model",
                                              run_id=run.info.run_id).version)
    client.set_model_version_tag(name, version, DIGEST_TAG, weights_digest(model_dir))
    mark_challenger(client, name, version, run.info.run_id)
    return version, run.info.run_id


def alias(client: MlflowClient, model: str, name: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(model, name).version)
    except mlflow.exceptions.MlflowException:
        return None


def test_weights_digest_follows_weights_and_config_only(tmp_path):
    a = weights_digest(hf_folder(tmp_path / "a", b"\x00\x01" * 100))
    assert weights_digest(hf_folder(tmp_path / "b", b"\x00\x01" * 100)) == a
    (tmp_path / "b" / "tokenizer.json").write_text('{"other": 1}')  # not weights
    assert weights_digest(tmp_path / "b") == a
    assert weights_digest(hf_folder(tmp_path / "c", b"\x00\x02" * 100)) != a  # one byte of a tensor
    assert weights_digest(hf_folder(tmp_path / "d", b"\x00\x01" * 100, '{"rope_theta": 100000}')) != a
    (tmp_path / "e").mkdir()
    with pytest.raises(FileNotFoundError, match="no weight files"):
        weights_digest(tmp_path / "e")


def test_same_weights_reuse_their_version(registry, tmp_path):
    client, exp, name = registry
    model = hf_folder(tmp_path / "m", b"weights-1")
    v1, _ = registered(client, exp, name, model)
    v2, _ = registered(client, exp, name, hf_folder(tmp_path / "n", b"weights-2"))
    assert find_version(client, name, weights_digest(model)) == v1
    assert find_version(client, name, "0" * 64) is None
    with mlflow.start_run(experiment_id=exp) as run:
        version, reused = register_or_reuse(client, name, str(model), run.info.run_id)
    assert (version, reused) == (v1, True) and alias(client, name, CHALLENGER) == v1
    assert len(client.search_model_versions(f"name = '{name}'")) == 2  # nothing new was registered
    assert client.get_model_version(name, v1).tags["evaluate_run_id"] == run.info.run_id and v2 == "2"


def test_gate_moves_the_alias_and_records_both_scores_and_their_data(registry, tmp_path):
    client, exp, name = registry
    gate = GateParams(metric="frozen_sample.bits_per_byte", direction="lower", margin=0.01)
    evidence = {"scored_in_run": "set below", "evaluation_data": {"path": "data/gate_sample.json", "md5": "f" * 32,
                                                                  "version": 1}, "settings": {"sample": {"w": 64}}}

    v1, run1 = registered(client, exp, name, hf_folder(tmp_path / "a", b"a"))
    first = run_gate(client, name, v1, 2.0, None, None, gate, {**evidence, "scored_in_run": run1}, run1)
    assert first.promoted and alias(client, name, CHAMPION) == v1

    v2, run2 = registered(client, exp, name, hf_folder(tmp_path / "b", b"b"))
    close = run_gate(client, name, v2, 1.995, v1, 2.0, gate, {**evidence, "scored_in_run": run2}, run2)
    assert not close.promoted and alias(client, name, CHAMPION) == v1 and alias(client, name, CHALLENGER) == v2
    tags = client.get_model_version(name, v2).tags
    assert tags["promotion.decision"] == "rejected" and tags["promotion.champion_version"] == v1
    assert float(tags["promotion.challenger_score"]) == 1.995 and float(tags["promotion.champion_score"]) == 2.0
    assert tags["promotion.data_md5"] == "f" * 32 and tags["promotion.scored_in_run"] == run2
    assert json.loads(tags["promotion.evidence"])["settings"] == {"sample": {"w": 64}}
    run_tags = client.get_run(run2).data.tags
    assert run_tags["promotion.decision"] == "rejected" and float(run_tags["promotion.champion_score"]) == 2.0

    v3, run3 = registered(client, exp, name, hf_folder(tmp_path / "c", b"c"))
    better = run_gate(client, name, v3, 1.9, v1, 2.0, gate, evidence, run3)
    assert better.promoted and alias(client, name, CHAMPION) == v3
    assert client.get_model_version(name, v3).tags["promotion.decision"] == "promoted"

    # The champion evaluated again (same weights, same version): unchanged, not promoted.
    same = run_gate(client, name, v3, 1.9, v3, 1.9, gate, evidence, run3)
    assert not same.promoted and same.outcome == "unchanged" and alias(client, name, CHAMPION) == v3
    assert client.get_model_version(name, v3).tags["promotion.decision"] == "unchanged"

    # A champion that could not be scored is not replaced by an uncompared challenger.
    v4, run4 = registered(client, exp, name, hf_folder(tmp_path / "d", b"d"))
    blind = run_gate(client, name, v4, 0.5, v3, None, gate, evidence, run4, "its weights could not be loaded")
    assert not blind.promoted and alias(client, name, CHAMPION) == v3 and "could not be loaded" in blind.reason


@pytest.mark.slow
def test_decision_is_a_prefect_artifact(registry, prefect_harness, tmp_path):
    from prefect import flow
    from prefect.artifacts import Artifact

    client, exp, name = registry
    gate = GateParams(metric="perplexity", direction="lower")
    evidence = {"evaluation_data": {"path": "data/tokenize", "md5": "abc.dir"}}

    @flow
    def gate_flow(weights: bytes, score: float, champion_score: float | None) -> bool:
        version, run_id = registered(client, exp, name, hf_folder(tmp_path / weights.decode(), weights))
        current = alias(client, name, CHAMPION)
        return run_gate(client, name, version, score, current, champion_score, gate, evidence, run_id).promoted

    assert gate_flow(b"one", 5.0, None) is True
    assert gate_flow(b"two", 6.0, 5.0) is False
    artifact = Artifact.get("evaluate-promotion")
    assert "not promoted" in artifact.data and "| 6 |" in artifact.data and "| 5 |" in artifact.data
    assert "abc.dir" in artifact.data and "same run" in artifact.data
