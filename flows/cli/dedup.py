"""``starflow dedup``: deduplicate any Parquet table of files, optionally against a persisted index.

    starflow dedup --input files.parquet --output out/                 # full run; index in out/index
    starflow dedup --input data/ingest/files --output out/             # a partitioned dataset
    starflow dedup --input new/ --output out2/ --index out/index       # new batch vs the index

Writes ``OUTPUT/kept.parquet`` (kept input rows), ``OUTPUT/clusters.parquet`` (``cluster_id,
repo_name, path, kept`` plus ``reason`` and ``new``), ``OUTPUT/rejected.parquet`` and, with
``--index``, ``OUTPUT/superseded.parquet`` (indexed files that a better new copy replaces),
then prints a one-line JSON summary.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import OptionalParamsOpt, fail, load
from ray_tasks.datasets import is_dataset
from ray_tasks.dedup.source import ParquetSource, open_dataset
from ray_tasks.tables import AtomicDir, write_parquet_atomic


def open_input(path: Path) -> ParquetSource:
    """A Parquet file, a partitioned dataset (its manifest's parts, in order: ``data/ingest/files``),
    or every ``*.parquet`` under a folder (sorted by path), as one source; only the footers are
    read here (the stage reads the rest row group by row group)."""
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder")
    if is_dataset(path):
        return open_dataset(path)
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"{path}: no .parquet files in this folder")
    return ParquetSource.open(files)


def dedup_command(
    input: Annotated[Path, typer.Option("--input", "-i", help="Parquet file or folder of them (columns repo_name, path, content)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="folder for kept.parquet, clusters.parquet, rejected.parquet")],
    index: Annotated[Path | None, typer.Option("--index", help="LSH index to deduplicate against and extend (created if absent); default OUTPUT/index, fresh")] = None,
    executor: Annotated[str | None, typer.Option("--executor", help="auto | ray | local (default: params ray.executor; auto: Ray from ray.auto_min_mb of content)")] = None,
    no_ray: Annotated[bool, typer.Option("--no-ray", help="same as --executor local")] = False,
    params_path: OptionalParamsOpt = Path("params.yaml"),
) -> None:
    """Exact + MinHash near-dedup of a Parquet table; prints {files_in, exact_removed, near_removed, ...}."""
    from ray_tasks.dedup.stage import dedup, write_kept
    from ray_tasks.executor import executor_session

    params = load(params_path, missing_ok=True)
    try:
        source = open_input(input)
    except ValueError as exc:
        fail(exc)
    try:
        with executor_session(params.ray, source.content_bytes(), "local" if no_ray else executor) as use_ray, \
                AtomicDir(output) as out:
            result = dedup(source, index if index is not None else out / "index", params.dedup, use_ray=use_ray)
            write_kept(result, out / "kept.parquet")
            write_parquet_atomic(result.clusters, out / "clusters.parquet")
            write_parquet_atomic(result.rejected, out / "rejected.parquet")
            if index is not None:
                write_parquet_atomic(result.superseded, out / "superseded.parquet")
    except ValueError as exc:
        fail(exc)
    s = result.stats
    typer.echo(json.dumps({"files_in": s["files_in"], "exact_removed": s["exact_removed"], "near_removed": s["near_removed"],
                           "files_kept": s["files_kept"], "superseded": s["superseded_in_index"], "clusters": s["clusters"], "ray": use_ray}))
