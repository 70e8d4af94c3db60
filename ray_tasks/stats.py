"""Accounting helpers the stages' ``stats.json`` share: files and bytes per value of a column, examples per reason.

Every number a user asks after a run ("how much Python did we keep, how much did
the alpha filter cost, show me what it dropped") is built from these: ingest's
account (ray_tasks/ingest/stage.py) and curate's (ray_tasks/curate/stats.py).
"""

from __future__ import annotations

from collections import defaultdict

import pyarrow as pa

EXAMPLES_PER_REASON = 5


def breakdown(table: pa.Table, column: str) -> dict[str, dict[str, int]]:
    """{value: {"files": n, "bytes": b}}, largest first by files."""
    if table.num_rows == 0 or column not in table.column_names:
        return {}
    acc: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    sizes = table.column("length_bytes").to_pylist() if "length_bytes" in table.column_names else [0] * table.num_rows
    for value, size in zip(table.column(column).to_pylist(), sizes):
        entry = acc["<none>" if value is None else str(value)]
        entry[0] += 1
        entry[1] += int(size or 0)
    ordered = sorted(acc.items(), key=lambda kv: (-kv[1][0], kv[0]))
    return {k: {"files": v[0], "bytes": v[1]} for k, v in ordered}


def examples(rejected: pa.Table, per_reason: int = EXAMPLES_PER_REASON) -> dict[str, list[str]]:
    """A few ``repo/path`` examples per drop reason, for eyeballing what a filter removed."""
    out: dict[str, list[str]] = defaultdict(list)
    for reason, repo, path in zip(*(rejected.column(c).to_pylist() for c in ("reason", "repo_name", "path"))):
        if len(out[reason]) < per_reason:
            out[reason].append(f"{repo}:{path}")
    return dict(sorted(out.items()))
