"""PII and decontamination commands for users working outside the DAG.

    starflow pii redact FILE            # the redacted text, and nothing else
    starflow pii redact - < FILE        # from stdin (--path names the file type: a.py, .env, x.yaml)
    starflow pii redact FILE --json     # findings: type, start, end, value, detector, replacement
    starflow decontaminate --input files.parquet --output DIR   # drop files holding benchmark text

Both take their settings from params.yaml's ``curate.pii`` / ``curate.decontamination``
when the file exists (``--params``), else the defaults, and run the curate stage's own
functions (ray_tasks/curate/pii.py, ray_tasks/curate/decontaminate.py): this module only
parses arguments, reads and writes files, and prints.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from flows.cli.common import OptionalParamsOpt, fail, load

pii_app = typer.Typer(help="PII detection and redaction (emails, keys, passwords, IP addresses).", no_args_is_help=True)


def _curate_params(path: Path):
    return load(path, missing_ok=True).curate


@pii_app.command("redact")
def pii_redact(
    file: Annotated[str, typer.Argument(help="file to redact, or - for stdin")] = "-",
    as_json: Annotated[bool, typer.Option("--json", help="print the findings (type and span) as JSON instead")] = False,
    path: Annotated[Optional[str], typer.Option("--path", help="file name deciding the file type (default: FILE)")] = None,
    params_path: OptionalParamsOpt = Path("params.yaml"),
) -> None:
    """Print FILE with PII replaced by <EMAIL>, <KEY>, <PASSWORD> and private IP addresses."""
    from ray_tasks.curate.pii import redact, replacement

    if file == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except FileNotFoundError:
            fail(f"{file}: no such file")
        except UnicodeDecodeError:
            fail(f"{file}: not UTF-8 text")
    redacted, findings = redact(text, path or ("" if file == "-" else file), _curate_params(params_path).pii)
    if as_json:
        rows = [{**f.to_dict(), "replacement": replacement(f)} for f in findings]
        typer.echo(json.dumps({"path": file, "findings": rows}, indent=2))
    else:
        sys.stdout.write(redacted)
        sys.stdout.flush()


def decontaminate_command(
    input: Annotated[Path, typer.Option("--input", help="a files table: Parquet file or folder of them (needs 'content')")],
    output: Annotated[Path, typer.Option("--output", help="folder for files.parquet, contamination.parquet, stats.json")],
    params_path: OptionalParamsOpt = Path("params.yaml"),
) -> None:
    """Drop files that contain a benchmark prompt docstring or solution; report which item matched."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ray_tasks.curate.decontaminate import build_matcher, decontaminate
    from ray_tasks.tables import write_json_atomic, write_parquet_atomic

    cfg = _curate_params(params_path).decontamination
    if not input.exists():
        fail(f"{input}: not found")
    try:
        table = pq.read_table(input)
    except (OSError, pa.ArrowInvalid) as exc:
        fail(f"{input}: not readable as Parquet ({exc})")
    if "content" not in table.column_names:
        fail(f"{input}: no 'content' column (has {table.column_names})")
    try:
        matcher = build_matcher(cfg)
    except ValueError as exc:
        fail(exc)
    kept, report, stats = decontaminate(table, matcher)
    write_parquet_atomic(kept, output / "files.parquet")
    write_parquet_atomic(report, output / "contamination.parquet")
    write_json_atomic(stats, output / "stats.json")
    typer.echo(json.dumps(stats, indent=2))
