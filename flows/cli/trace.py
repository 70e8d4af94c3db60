"""Attribution: which spans of a text are in the training data, from which files, under which license.

    starflow trace FILE                # spans found, best matching files, overlap fraction
    starflow trace - < completion.py   # from stdin
    starflow trace FILE --json         # the full report for tools
    starflow trace --repo pypi/attrs   # is the repository in the set; its removed files, by filter

Reads the ``attribution`` stage's index (``data/attribution``) and, for ``--repo``, the rejected
tables of ingest, dedup and curate; the query settings come from ``params.yaml: attribution``
(``--params``; the defaults when absent). The work is ``ray_tasks/attribution/``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from flows.cli.common import OptionalParamsOpt, fail, load
from flows.workspace import DATA, stage_dir


def trace_command(
    file: Annotated[Optional[str], typer.Argument(help="file to trace, or - for stdin")] = None,
    repo: Annotated[Optional[str], typer.Option("--repo", help="OWNER/NAME: report this repository instead")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    index: Annotated[Path, typer.Option("--index", help="the attribution index folder")] = stage_dir("attribution"),
    params_path: OptionalParamsOpt = Path("params.yaml"),
) -> None:
    """Trace FILE (or a repository with --repo) to the training set of this workspace."""
    from ray_tasks.attribution import removals
    from ray_tasks.attribution.trace import Attribution

    if (file is None) == (repo is None):
        fail("give either FILE (or - for stdin) or --repo OWNER/NAME")
    if not (index / "manifest.json").exists():
        fail(f"{index}: no attribution index (run `starflow stage attribution` or `starflow run`)")
    if repo is not None:
        report = removals.repository(DATA, index, repo)
        return _print(report, as_json, _repo_text)
    text = _read(file)
    try:
        att = Attribution.open(index, load(params_path, missing_ok=True).attribution)
    except (OSError, ValueError) as exc:
        fail(f"{index}: unreadable attribution index ({exc})")
    report = att.trace(text)
    sha = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    report["removed"] = removals.removed(DATA, "sha256", sha)
    _print(report, as_json, _trace_text)


def _read(file: str) -> str:
    if file == "-":
        return sys.stdin.read()
    try:
        return Path(file).read_text(encoding="utf-8")
    except FileNotFoundError:
        fail(f"{file}: no such file")
    except UnicodeDecodeError:
        fail(f"{file}: not UTF-8 text")


def _print(report: dict, as_json: bool, as_text) -> None:
    typer.echo(json.dumps(report, indent=2, sort_keys=True) if as_json else as_text(report))


def _trace_text(r: dict) -> str:
    lines = [f"{r['overlap_fraction']:.1%} of {r['chars']} characters found verbatim in the training data "
             f"(data version {r['data_version'] or 'unknown'})"]
    for f in r["exact_file"]:
        lines.append(f"  identical to {f['repo_name']}/{f['path']} ({f['license_type']})")
    for f in r["files"]:
        licenses = ", ".join(f["detected_licenses"]) or "none detected"
        lines.append(f"  {f['matched_chars']:>7} chars  {f['repo_name']}  {f['path']}  [{f['license_type']}; {licenses}]")
        lines += [f"           {s['start']}-{s['end']} (file offset {s['file_start']})" for s in f["spans"][:5]]
    for row in r["removed"]:
        dup = f", a duplicate of {row['duplicate_of']}" if row.get("duplicate_of") else ""
        lines.append(f"  this file as {row['repo_name']}/{row['path']} was removed by {row['stage']} ({row['reason']}{dup})")
    return "\n".join(lines)


def _repo_text(r: dict) -> str:
    head = (f"{r['repo_name']}: in the set, {r['files_in_set']} files ({', '.join(r['license_types'])})"
            if r["in_set"] else f"{r['repo_name']}: not in the training set")
    lines = [head, f"  {r['files_removed']} files removed"]
    lines += [f"    {n:>5}  {reason}" for reason, n in r["removed_by_reason"].items()]
    for row in r["removed"][:20]:
        dup = f" -> duplicate of {row['duplicate_of']}" if row.get("duplicate_of") else ""
        lines.append(f"    {row['path']}: {row['stage']} {row['reason']}{dup}")
    return "\n".join(lines)
