"""What the filters removed, from the rejected tables every stage writes (``ray_tasks.tables.REJECTED_SCHEMA``):
is a repository in the set, and which of its files went where.

Read at query time from the workspace's ``data/<stage>/rejected.parquet``: they are versioned with
their stages, so the answer is always the one for the data the index was built from. A dedup row's
``detail`` is the kept copy's ``repo_name/path``.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from ray_tasks.attribution import stage

REJECTING_STAGES = ("ingest", "dedup", "curate")


def removed(data_dir: Path, column: str, value: str) -> list[dict]:
    """Rejected rows (every rejecting stage) whose ``column`` (``repo_name`` or ``sha256``) is ``value``."""
    rows: list[dict] = []
    for name in REJECTING_STAGES:
        path = data_dir / name / "rejected.parquet"
        if not path.exists():
            continue
        table = pq.read_table(path)
        for row in table.filter(pc.equal(table.column(column), value)).to_pylist():
            entry = {k: row[k] for k in ("stage", "reason", "repo_name", "path")}
            if name == "dedup":
                entry["duplicate_of"] = row["detail"]
            rows.append(entry)
    return rows


def repository(data_dir: Path, index_dir: Path, repo: str) -> dict:
    """Whether ``repo`` is in the training set, its files there, and its files each filter removed."""
    files = pq.read_table(index_dir / stage.FILES, columns=["repo_name", "path", "license_type"])
    mine = files.filter(pc.equal(files.column("repo_name"), repo))
    gone = removed(data_dir, "repo_name", repo)
    by_reason: dict[str, int] = {}
    for row in gone:
        key = f"{row['stage']}:{row['reason']}"
        by_reason[key] = by_reason.get(key, 0) + 1
    return {
        "repo_name": repo, "in_set": mine.num_rows > 0, "files_in_set": mine.num_rows,
        "license_types": sorted(set(mine.column("license_type").to_pylist()) - {None}),
        "paths": sorted(mine.column("path").to_pylist()),
        "files_removed": len(gone), "removed_by_reason": dict(sorted(by_reason.items())), "removed": gone,
    }
