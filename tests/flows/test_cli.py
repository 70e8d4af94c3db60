import json

from typer.testing import CliRunner

from flows.cli import app

runner = CliRunner()


def test_help_lists_every_command():
    out = runner.invoke(app, ["--help"]).output
    for cmd in ["run", "stage", "status", "params", "init", "serve"]:
        assert cmd in out


def test_bad_params_fail_at_start_naming_the_key(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("train:\n  max_steps: -3\n")
    result = runner.invoke(app, ["params", "--params", str(bad)])
    assert result.exit_code == 2
    assert "train.max_steps" in result.output


def test_unknown_stage_is_refused():
    result = runner.invoke(app, ["stage", "nope"])
    assert result.exit_code == 2 and "unknown stage" in result.output
    result = runner.invoke(app, ["stage", "ingest", "nope"])  # refused before any stage runs
    assert result.exit_code == 2 and "'nope'" in result.output


def test_scheduled_deployment_has_cron_and_a_params_form():
    from flows.deployments import pipeline_deployment

    dep = pipeline_deployment("weekly", "0 3 * * 0")
    assert dep.name == "weekly" and dep.schedules[0].schedule.cron == "0 3 * * 0"
    from prefect.utilities.callables import parameter_schema

    from flows.pipeline import pipeline

    # The UI form is the flow's parameter schema: built from the typed config, descriptions included.
    schema = parameter_schema(pipeline).model_dump()
    assert "params" in schema["properties"] and "Peak learning rate" in json.dumps(schema)
