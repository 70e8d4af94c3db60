"""The deployment forms and the serve section, without a server (the served ones: test_deployments.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from flows.config import load_params
from flows.deployments import forms
from flows.serve_params import ServeParams
from tests.paths import ROOT


def test_each_form_is_prefilled_from_the_params_file():
    params = load_params(ROOT / "params.tiny.yaml")
    today = params.model_dump(mode="json")
    made = forms(params, "params.tiny.yaml")
    assert list(made) == ["pipeline", "ingest", "dedup", "curate", "attribution", "tokenize", "train", "evaluate"]
    schema, fixed, _ = made["tokenize"]
    assert fixed == {"params_file": "params.tiny.yaml", "stages": ["tokenize"]}
    assert list(schema["properties"]) == ["tokenize", "overrides", "force", "experiment"]
    assert schema["properties"]["tokenize"]["default"] == today["tokenize"]
    assert schema["properties"]["tokenize"]["default"]["vocab_size"] == 512  # the tiny file's, not the class default
    assert "TokenizeParams" in schema["definitions"]
    pipeline_form = made["pipeline"][0]["properties"]
    assert [p["position"] for p in pipeline_form.values()] == list(range(len(pipeline_form)))


@pytest.mark.parametrize("bad, key", [({"cron": "61 * * * *"}, "cron"), ({"timezone": "Mars/Olympus"}, "timezone"),
                                      ({"slug": "x", "every": "day"}, "every")])
def test_serve_section_refuses_bad_values_naming_the_key(bad, key):
    with pytest.raises(ValidationError, match=key):
        ServeParams(**bad)
