"""The ``starflow`` command line.

    starflow run                 # the whole DAG: each stale stage runs, DVC records it
    starflow stage curate        # one stage (what dvc.yaml's cmd calls); several run in order
    starflow status              # which stages are stale, and why
    starflow params              # validate params.yaml and print the resolved tree
    starflow init                # make the current folder a workspace (git, DVC, local remote)
    starflow serve --cron "0 3 * * 0"   # a scheduled deployment on a Prefect server
    starflow eval humaneval --samples FILE.jsonl [--k 1,10,100]   # score any model's samples in the sandbox
    starflow pii redact [FILE|-] [--json]       # PII replaced by <EMAIL>/<KEY>/<PASSWORD>/private IPs
    starflow decontaminate --input PARQUET --output DIR   # drop files holding benchmark text
    starflow curate --input PATH --output DIR   # ingest -> dedup -> curate on any source
    starflow lang detect FILE... | --list       # language of files; supported languages
    starflow license detect REPO_DIR            # SPDX licenses and license_type of a repository
    starflow dedup --input PARQUET_OR_DIR --output DIR [--index DIR]   # exact + MinHash near-dedup

Run from the workspace: the folder holding dvc.yaml and params.yaml.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

import flows  # noqa: F401  (sets embedded-default environment before Prefect loads)
from flows.config import STAGES, ConfigError, load_params

app = typer.Typer(help="StarFlow: curate code, train StarCoder2-style models, evaluate them: one versioned DAG.",
                  no_args_is_help=True, add_completion=False)
console = Console(stderr=True)

ParamsOpt = Annotated[Path, typer.Option("--params", help="params.yaml to validate before running")]


def _params_or_exit(path: Path):
    try:
        return load_params(path)
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


@app.command()
def run(
    force: Annotated[Optional[list[str]], typer.Option("--force", "-f", help="run this stage even if DVC says it is up to date (repeatable)")] = None,
    params_path: ParamsOpt = Path("params.yaml"),
) -> None:
    """Run the whole DAG as one Prefect flow run; only stages DVC finds stale execute."""
    _params_or_exit(params_path)
    from flows.pipeline import pipeline

    summary = pipeline(force=force or [])
    typer.echo(json.dumps(summary, indent=2))


@app.command()
def stage(
    names: Annotated[list[str], typer.Argument(help=f"one or more of: {', '.join(STAGES)}, run in the order given")],
    params_path: ParamsOpt = Path("params.yaml"),
) -> None:
    """Run stages now, unconditionally (dvc.yaml calls this; `dvc repro` decides staleness).

    Several names run in one process, one after another: one start-up instead of one each."""
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        console.print(f"[red]error:[/red] unknown stage {unknown[0]!r}; expected one of {', '.join(STAGES)}")
        raise typer.Exit(2)
    params = _params_or_exit(params_path)
    from flows.stages import STAGE_FLOWS

    for name in names:
        stats = STAGE_FLOWS[name](params)
        typer.echo(json.dumps(stats, indent=2, default=str))


@app.command()
def status() -> None:
    """Show each stage of dvc.yaml and whether it would run."""
    from flows import dvc_dag

    table = Table("stage", "state", "why")
    for name in dvc_dag.stage_names():
        why = dvc_dag.changes(name)
        table.add_row(name, "stale" if why else "up to date", json.dumps(why, default=str) if why else "")
    Console().print(table)


@app.command()
def params(params_path: ParamsOpt = Path("params.yaml")) -> None:
    """Validate params.yaml and print the resolved tree (defaults filled in)."""
    import yaml

    resolved = _params_or_exit(params_path)
    typer.echo(yaml.safe_dump(resolved.model_dump(mode="json"), sort_keys=False))


@app.command()
def init(
    remote: Annotated[str, typer.Option(help="folder used as the default DVC remote")] = ".dvc_remote",
) -> None:
    """Make the current folder a workspace: git and DVC initialised, a local DVC remote as default."""
    if not Path(".git").exists():
        _sh("git", "init", "-q")
    if not Path(".dvc").exists():
        _sh(sys.executable, "-m", "dvc", "init", "-q")
    current = subprocess.run([sys.executable, "-m", "dvc", "remote", "default"], capture_output=True, text=True)
    if current.returncode != 0:  # "No default remote set"
        Path(remote).mkdir(parents=True, exist_ok=True)
        # --local: the remote's absolute path belongs to this clone, not to git history.
        _sh(sys.executable, "-m", "dvc", "remote", "add", "-d", "-f", "--local", "local", str(Path(remote).resolve()))
    typer.echo("workspace ready")


@app.command()
def serve(
    cron: Annotated[str, typer.Option(help="cron schedule for retraining runs")] = "0 3 * * 0",
    name: Annotated[str, typer.Option(help="deployment name")] = "scheduled-retrain",
) -> None:
    """Serve the pipeline as a scheduled deployment (needs `prefect server start` and PREFECT_API_URL)."""
    from flows.deployments import serve_pipeline

    serve_pipeline(name=name, cron=cron)


from flows.cli_dedup import dedup_command  # noqa: E402  (after `console`, which it uses)

app.command("dedup")(dedup_command)


from flows.cli_curation import curate_command, lang_app, license_app  # noqa: E402

app.add_typer(lang_app, name="lang")
app.add_typer(license_app, name="license")
app.command("curate")(curate_command)


from flows.cli_privacy import decontaminate_command, pii_app  # noqa: E402

app.add_typer(pii_app, name="pii")
app.command("decontaminate")(decontaminate_command)


from flows.cli_eval import eval_app  # noqa: E402

app.add_typer(eval_app, name="eval")


def _sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True)


if __name__ == "__main__":
    app()
