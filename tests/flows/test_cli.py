from pathlib import Path

import pytest
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


def test_params_in_place_puts_params_yaml_back_even_after_a_failure(in_tmp):
    from flows.pipeline import params_in_place

    Path("params.yaml").write_text("mine: 1\n")
    Path("other.yaml").write_text("other: 2\n")
    with params_in_place(Path("other.yaml")):
        assert Path("params.yaml").read_text() == "other: 2\n"
    assert Path("params.yaml").read_text() == "mine: 1\n"
    with pytest.raises(RuntimeError), params_in_place(Path("other.yaml")):
        raise RuntimeError("stage failed")
    assert Path("params.yaml").read_text() == "mine: 1\n"
    # A run killed mid-way left params.yaml aside: the next run puts it back first.
    Path(".starflow").mkdir(exist_ok=True)
    Path(".starflow/params.yaml.saved").write_text("mine: 1\n")
    Path("params.yaml").write_text("other: 2\n")
    with params_in_place(Path("params.yaml")):
        assert Path("params.yaml").read_text() == "mine: 1\n"
    assert not Path(".starflow/params.yaml.saved").exists()


def test_stage_run_nests_under_the_parent_run_env_and_stands_alone_without(in_tmp, monkeypatch):
    import mlflow

    from flows import tracking
    from flows.config import Params

    params = Params()
    with tracking.stage_run("dedup", params) as alone:
        pass
    monkeypatch.setenv(tracking.PARENT_RUN_ENV, alone.info.run_id)
    with tracking.stage_run("dedup", params) as nested:
        pass
    client = mlflow.MlflowClient()
    assert "mlflow.parentRunId" not in client.get_run(alone.info.run_id).data.tags
    assert client.get_run(nested.info.run_id).data.tags["mlflow.parentRunId"] == alone.info.run_id


@pytest.mark.slow
def test_every_module_imports_alone():
    """No import cycle: each module of the three packages imports in a fresh interpreter."""
    import subprocess
    import sys

    from tests.paths import ROOT

    modules = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for pkg in ("flows", "ray_tasks", "models") for p in (ROOT / pkg).rglob("*.py")
        if p.name != "zygote.py"  # a script run as `python -I -S zygote.py`, not imported
    )
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"

    def import_alone(m: str) -> str | None:
        proc = subprocess.run([sys.executable, "-c", code, m], cwd=ROOT, capture_output=True, text=True)
        return f"{m}: {proc.stderr.strip().splitlines()[-1]}" if proc.returncode else None

    # Three interpreters at a time: each spends much of its start reading files, so even 2 cores
    # take it in about half the serial time (100 s in CI serially).
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(3) as pool:
        failed = [f for f in pool.map(import_alone, modules) if f]
    assert not failed, "\n".join(failed)
