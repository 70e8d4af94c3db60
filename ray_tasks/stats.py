"""Accounting for a curation step: files and bytes kept and dropped, by reason, language and license class.

Every number a user asks after a run ("how much Python did we keep, how much did
the alpha filter cost, show me what it dropped") comes from here, for the
stage's ``stats.json``, its metrics and its plots.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

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


def curation_stats(files_in: pa.Table, kept: pa.Table, rejected: pa.Table) -> dict[str, Any]:
    """The stage's full account; ``files_in == files_kept + files_rejected`` always holds."""
    return {
        "files_in": files_in.num_rows,
        "bytes_in": _bytes(files_in),
        "files_kept": kept.num_rows,
        "bytes_kept": _bytes(kept),
        "files_rejected": rejected.num_rows,
        "bytes_rejected": _bytes(rejected),
        "rejected_by_reason": breakdown(rejected, "reason"),
        "kept_by_language": breakdown(kept, "language"),
        "kept_by_license_type": breakdown(kept, "license_type"),
        "in_by_license_type": breakdown(files_in, "license_type"),
        "kept_vendor_files": _count_true(kept, "is_vendor"),
        "rejected_examples": examples(rejected),
    }


def _bytes(table: pa.Table) -> int:
    return int(sum(v or 0 for v in table.column("length_bytes").to_pylist())) if table.num_rows else 0


def _count_true(table: pa.Table, column: str) -> int:
    return int(sum(1 for v in table.column(column).to_pylist() if v)) if column in table.column_names else 0
