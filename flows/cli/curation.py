"""Curation commands for users working outside the DAG.

    starflow lang detect FILE...          # one JSON object per line: path, language (go-enry's)
    starflow lang detect --list           # every language with its linguist type, then the count
    starflow license detect REPO_DIR      # licenses (SPDX), license_type, the files they came from
    starflow curate --input PATH --output DIR   # ingest -> dedup -> curate on any source
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from flows.cli.common import fail

lang_app = typer.Typer(help="Language detection (go-enry: linguist's names and rules).", no_args_is_help=True)
license_app = typer.Typer(help="License detection (ScanCode on license-like files).", no_args_is_help=True)


@lang_app.command("detect")
def lang_detect(
    files: Annotated[Optional[list[Path]], typer.Argument(help="files to classify")] = None,
    list_: Annotated[bool, typer.Option("--list", help="print every language (name<TAB>type) and their number")] = False,
) -> None:
    """Print the language of each file as JSON lines (``{"path": ..., "language": ...}``), or with
    ``--list`` every language go-enry knows and its linguist type (programming, markup, data, prose)."""
    from ray_tasks.language import detect_language, supported_languages

    if list_:
        langs = supported_languages()
        for name, kind in langs:
            typer.echo(f"{name}\t{kind}")
        typer.echo(f"{len(langs)} languages")
        return
    if not files:
        fail("give one or more files, or --list")
    status = 0
    for path in files:
        try:
            with open(path, "rb") as fh:
                content = fh.read()  # the whole file, as curate gives go-enry
        except OSError as exc:
            typer.echo(json.dumps({"path": str(path), "language": None, "error": exc.strerror or str(exc)}))
            status = 1
            continue
        typer.echo(json.dumps({"path": str(path), "language": detect_language(path.as_posix(), content)}))
    raise typer.Exit(status)


@license_app.command("detect")
def license_detect(repo_dir: Annotated[Path, typer.Argument(help="a repository folder")]) -> None:
    """Scan a repository's license-like files; print one JSON object."""
    from ray_tasks.ingest.sources import folder_repository

    if not repo_dir.is_dir():
        fail(f"{repo_dir} is not a folder")
    repo = folder_repository(repo_dir, repo_dir.resolve().name, "directory", None)
    typer.echo(json.dumps({
        "licenses": repo.licenses.repo_licenses,
        "license_type": repo.license_type,
        "files": repo.licenses.files,
        "by_directory": repo.licenses.by_dir,
    }))


def source_for(path: str, kind: str | None) -> dict:
    """The ``ingest.sources`` entry for a path or URL, guessing its kind when not given."""
    p = Path(path).expanduser()
    if kind is None:
        if "://" in path or path.startswith("git@") or (p / ".git").exists():
            kind = "git"
        elif p.is_file() or not p.exists():
            name = p.name.lower()
            kind = "parquet" if name.endswith(".parquet") else "jsonl" if ".json" in name else "parquet"
        elif any(p.rglob("*.parquet")):
            kind = "parquet"
        elif any(p.rglob("*.jsonl")):
            kind = "jsonl"
        else:
            kind = "directory"
    if kind == "git":
        return {"kind": "git", "urls": [path if "://" in path or path.startswith("git@") else str(p.resolve())]}
    return {"kind": kind, "path": str(p.resolve())}


def curate_command(
    input: Annotated[str, typer.Option("--input", help="folder of repositories, git URL/path, Parquet or JSONL")],
    output: Annotated[Path, typer.Option("--output", help="folder for data/, metrics/ and the MLflow store")],
    kind: Annotated[Optional[str], typer.Option(help="directory | git | parquet | jsonl (default: guessed)")] = None,
    params_path: Annotated[Path, typer.Option("--params", help="params.yaml for every other setting")] = Path("params.yaml"),
) -> None:
    """Ingest, deduplicate and curate any source, writing the same outputs as the DAG into OUTPUT."""
    from flows.cli.common import load
    from flows.config import Params

    params = load(params_path, missing_ok=True)
    spec = source_for(input, kind)
    data = params.model_dump()
    data["ingest"]["sources"] = [spec]
    params = Params.model_validate(data)
    output.mkdir(parents=True, exist_ok=True)
    from flows.stages import STAGE_FLOWS

    cwd = os.getcwd()
    os.chdir(output)  # the stage flows write data/<stage> and metrics/ relative to the workspace
    try:
        summary = {name: STAGE_FLOWS[name](params) for name in ("ingest", "dedup", "curate")}
    finally:
        os.chdir(cwd)
    typer.echo(json.dumps({"source": spec, "output": str(output.resolve() / "data" / "curate"),
                           **{k: {m: v.get(m) for m in ("files_in", "files_kept", "files_rejected") if m in v}
                              for k, v in summary.items()}}, default=str))
