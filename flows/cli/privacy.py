"""PII and decontamination commands for users working outside the DAG.

    starflow pii redact FILE            # the redacted text, and nothing else
    starflow pii redact - < FILE        # from stdin (--path names the file type: a.py, .env, x.yaml)
    starflow pii redact FILE --json     # findings: type, start, end, value, detector, replacement
    starflow decontaminate --input files.parquet --output DIR   # drop files holding benchmark text

Both take their settings from params.yaml's ``curate.pii`` / ``curate.decontamination``
when the file exists (``--params``), else the defaults.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from flows.cli.common import fail

pii_app = typer.Typer(help="PII detection and redaction (emails, keys, passwords, IP addresses).", no_args_is_help=True)

ParamsOpt = Annotated[Path, typer.Option("--params", help="params.yaml to read curate.* settings from (defaults if absent)")]


def _curate_params(path: Path):
    from flows.cli.common import load

    return load(path, missing_ok=True).curate


@pii_app.command("redact")
def pii_redact(
    file: Annotated[str, typer.Argument(help="file to redact, or - for stdin")] = "-",
    as_json: Annotated[bool, typer.Option("--json", help="print the findings (type and span) as JSON instead")] = False,
    path: Annotated[Optional[str], typer.Option("--path", help="file name deciding the file type (default: FILE)")] = None,
    params_path: ParamsOpt = Path("params.yaml"),
) -> None:
    """Print FILE with PII replaced by <EMAIL>, <KEY>, <PASSWORD> and private IP addresses."""
    from ray_tasks.curate.pii import PiiConfig, parse_types, redact, replacement

    if file == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except FileNotFoundError:
            fail(f"{file}: no such file")
        except UnicodeDecodeError:
            fail(f"{file}: not UTF-8 text")
    cfg = _curate_params(params_path).pii
    config = PiiConfig(parse_types(cfg.types), cfg.base64_entropy_limit, cfg.hex_entropy_limit)
    redacted, findings = redact(text, path or ("" if file == "-" else file), config)
    if as_json:
        rows = [{**f.to_dict(), "replacement": replacement(f)} for f in findings]
        typer.echo(json.dumps({"path": file, "findings": rows}, indent=2))
    else:
        sys.stdout.write(redacted)
        sys.stdout.flush()


def decontaminate_command(
    input: Annotated[Path, typer.Option("--input", help="a files table: Parquet file or folder of them (needs 'content')")],
    output: Annotated[Path, typer.Option("--output", help="folder for files.parquet, contamination.parquet, stats.json")],
    params_path: ParamsOpt = Path("params.yaml"),
) -> None:
    """Drop files that contain a benchmark prompt docstring or solution; report which item matched."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ray_tasks.curate.decontaminate import BenchmarkFile, DecontaminationFilter, Matcher, load_benchmarks
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
    specs = [BenchmarkFile(f.name, f.path, tuple(f.fields), f.id_field, tuple(f.cut_before)) for f in cfg.files]
    try:
        matcher = Matcher.build(load_benchmarks(cfg.humaneval, specs), cfg.min_chars)
    except ValueError as exc:
        fail(exc)
    items = DecontaminationFilter(matcher).explain(table)
    hit = [i for i, m in enumerate(items) if m]
    keep = pa.array([m is None for m in items])
    ids = {c: table.column(c).to_pylist() for c in ("repo_name", "path", "sha256") if c in table.column_names}
    report = pa.table({
        **{c: [ids[c][i] for i in hit] for c in ids},
        "benchmark": [items[i].benchmark for i in hit],
        "item_id": [items[i].item_id for i in hit],
        "field": [items[i].field for i in hit],
    })
    write_parquet_atomic(table.filter(keep), output / "files.parquet")
    write_parquet_atomic(report, output / "contamination.parquet")
    by_benchmark: dict[str, int] = {}
    for i in hit:
        by_benchmark[items[i].benchmark] = by_benchmark.get(items[i].benchmark, 0) + 1
    stats = {"files_in": table.num_rows, "files_kept": table.num_rows - len(hit), "files_contaminated": len(hit),
             "contaminated_by_benchmark": by_benchmark, "benchmark_strings": len(matcher.items)}
    write_json_atomic(stats, output / "stats.json")
    typer.echo(json.dumps(stats, indent=2))
