"""The ``starflow`` command line.

    starflow run                 # the whole DAG: each stale stage runs, DVC records it
    starflow stage curate        # one stage (what dvc.yaml's cmd calls); several run in order
    starflow status              # which stages are stale, and why
    starflow params              # validate params.yaml and print the resolved tree
    starflow init                # make the current folder a workspace (git, DVC, local remote)
    starflow run --set train.lr=3e-4 [--name NAME]   # a parameter run: a DVC experiment; params.yaml untouched
    starflow server [stop|status]            # Prefect + MLflow servers on localhost (embedded stores)
    starflow serve [--cron "0 3 * * 0"]      # deployments: the pipeline and each stage, on params.yaml's schedule
    starflow lineage models:/starflow-coder@champion [--json]   # commit, params, DVC md5s, Prefect run, MLflow runs
    starflow compare A B [--all] [--json]    # differing params and metrics side by side (run ids, versions, names)
    starflow eval humaneval --samples FILE.jsonl [--k 1,10,100]   # score any model's samples in the sandbox
    starflow pii redact [FILE|-] [--json]       # PII replaced by <EMAIL>/<KEY>/<PASSWORD>/private IPs
    starflow decontaminate --input PARQUET --output DIR   # drop files holding benchmark text
    starflow curate --input PATH --output DIR   # ingest -> dedup -> curate on any source
    starflow lang detect FILE... | --list       # language of files; supported languages
    starflow license detect REPO_DIR            # SPDX licenses and license_type of a repository
    starflow dedup --input PARQUET_OR_DIR --output DIR [--index DIR]   # exact + MinHash near-dedup
    starflow trace FILE|- [--json] | --repo OWNER/NAME   # is this code in the training data, and whose

Run from the workspace: the folder holding dvc.yaml and params.yaml.
"""

from __future__ import annotations

import typer

import flows  # noqa: F401  (sets embedded-default environment before Prefect loads)
from flows.servers import export_server_env

# PREFECT_API_URL / MLFLOW_TRACKING_URI of this workspace's `starflow server`, when it is up, for
# every command (and what it starts: `dvc repro`'s stages, served runs). Here, not in flows/__init__,
# so that stage code does not import it (DVC would count it as every stage's code).
export_server_env()
from flows.cli.curation import curate_command, lang_app, license_app
from flows.cli.dag import dag_app
from flows.cli.dedup import dedup_command
from flows.cli.eval import eval_app
from flows.cli.lineage import lineage_app
from flows.cli.ops import ops_app
from flows.cli.privacy import decontaminate_command, pii_app
from flows.cli.trace import trace_command

app = typer.Typer(help="StarFlow: curate code, train StarCoder2-style models, evaluate them: one versioned DAG.",
                  no_args_is_help=True, add_completion=False)
app.registered_commands += dag_app.registered_commands
app.registered_commands += ops_app.registered_commands
app.registered_commands += lineage_app.registered_commands
app.command("dedup")(dedup_command)
app.command("curate")(curate_command)
app.command("decontaminate")(decontaminate_command)
app.command("trace")(trace_command)
app.add_typer(lang_app, name="lang")
app.add_typer(license_app, name="license")
app.add_typer(pii_app, name="pii")
app.add_typer(eval_app, name="eval")

if __name__ == "__main__":
    app()
