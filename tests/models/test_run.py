"""Run specs without DeepSpeed: the two stages' runs, the resume fingerprint, the model shape's one declaration."""

import pytest
from pydantic import ValidationError

from models.params import ModelParams, ModelShape, TrainParams
from models.presets import PRESETS
from models.run import TrainRun, deepspeed_config, stage_runs


def _runs(tmp_path, **train):
    return stage_runs(TrainParams.model_validate(train), tmp_path / "shards", tmp_path / "work", 2048)


def test_stage2_takes_its_settings_from_stage2_params_and_the_rest_from_stage1(tmp_path):
    s1, s2 = _runs(tmp_path, lr=1e-3, weight_decay=0.05, stage2={"lr": 1e-4, "max_steps": 7, "rope_theta": 5e5})
    assert s1.hparams.lr == 1e-3 and s1.hparams.max_steps == 300 and s1.shape == PRESETS["tiny"]
    assert (s2.hparams.lr, s2.hparams.max_steps, s2.hparams.micro_batch_size) == (1e-4, 7, 2)
    assert s2.hparams.weight_decay == 0.05  # not a stage-2 field: stage 1's
    assert s2.shape == PRESETS["tiny"].replace(rope_theta=5e5, max_position_embeddings=2048)
    assert s2.data_stage == "stage2" and s2.init_from == str(tmp_path / "work" / "stage1_export")
    assert s1.work_dir != s2.work_dir
    assert len(_runs(tmp_path, stage2={"max_steps": 0})) == 1


def test_fingerprint_follows_the_settings_not_the_place_or_stage2(tmp_path):
    (s1, _), (same, _) = _runs(tmp_path), _runs(tmp_path)
    assert s1.fingerprint() == same.fingerprint()
    assert _runs(tmp_path, lr=1e-3)[0].fingerprint() != s1.fingerprint()
    assert _runs(tmp_path, model={"num_hidden_layers": 2})[0].fingerprint() != s1.fingerprint()
    assert _runs(tmp_path, stage2={"lr": 1e-5})[0].fingerprint() == s1.fingerprint()  # stage 1 does not use it
    assert _runs(tmp_path, num_processes=2)[0].fingerprint() == s1.fingerprint()
    assert s1.model_copy(update={"work_dir": "elsewhere"}).fingerprint() == s1.fingerprint()


def test_a_run_round_trips_through_json_and_feeds_deepspeed(tmp_path):
    s1, s2 = _runs(tmp_path, zero_stage=2, dtype="bf16")
    assert TrainRun.model_validate_json(s2.model_dump_json()) == s2
    assert TrainRun.model_validate(s1.with_absolute_paths().model_dump(mode="json")).work_dir.startswith("/")
    ds = deepspeed_config(s2)
    assert ds["zero_optimization"] == {"stage": 2} and ds["bf16"] == {"enabled": True}
    assert ds["train_micro_batch_size_per_gpu"] == 2


def test_model_overrides_are_the_shape_fields_declared_once():
    shape_fields = ModelShape.model_fields
    overrides = {k: f for k, f in ModelParams.model_fields.items() if k != "preset"}
    assert list(overrides) == list(shape_fields)
    for name, field in overrides.items():
        assert field.default is None and field.description == shape_fields[name].description
    assert ModelParams(preset="3b", num_hidden_layers=2).shape() == PRESETS["3b"].replace(num_hidden_layers=2)
    with pytest.raises(ValidationError, match="num_key_value_heads"):
        ModelParams(num_attention_heads=4, num_key_value_heads=3)
    with pytest.raises(ValidationError, match="greater than 0"):
        ModelParams(hidden_size=0)
