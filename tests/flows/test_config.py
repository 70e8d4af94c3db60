from pathlib import Path

import pytest

from flows.config import ConfigError, Params, load_params, parse_params
from flows.tracking import flatten

from tests.paths import ROOT  # noqa: E402


def test_project_params_yaml_is_valid_and_complete():
    params = load_params(ROOT / "params.yaml")
    # Every field is spelled out in params.yaml: resolved == written.
    import yaml

    written = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert params.model_dump(mode="json") == written


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"train\.learning_rate: Extra inputs are not permitted"):
        parse_params({"train": {"learning_rate": 0.1}})


def test_bad_value_is_named():
    with pytest.raises(ConfigError, match=r"train\.zero_stage"):
        parse_params({"train": {"zero_stage": 5}})
    with pytest.raises(ConfigError, match=r"tokenize\.val_fraction"):
        parse_params({"tokenize": {"val_fraction": 1.5}})


def test_source_errors_name_the_source_field():
    with pytest.raises(ConfigError, match=r"ingest\.sources\.0\.path: Field required"):
        parse_params({"ingest": {"sources": [{"kind": "directory"}]}})
    with pytest.raises(ConfigError, match=r"ingest\.sources\.0"):
        parse_params({"ingest": {"sources": [{"kind": "ftp"}]}})


def test_cross_field_validation():
    with pytest.raises(ConfigError, match="num_key_value_heads"):
        parse_params({"train": {"model": {"num_attention_heads": 4, "num_key_value_heads": 3}}})
    with pytest.raises(ConfigError, match="must be <= num_samples"):
        parse_params({"evaluate": {"humaneval": {"ks": [1, 10], "num_samples": 5}}})


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


def test_flatten_for_mlflow():
    flat = flatten(Params())
    assert flat["train.model.preset"] == "tiny" and flat["train.stage2.rope_theta"] == 1e6
    assert flat["ingest.sources.0.kind"] == "python_env"
