"""The curate stage's account: ``stats.json`` (everything) and the metrics DVC and MLflow track.

``files_in == files_kept + files_rejected`` always holds; the shared helpers
(``breakdown``, ``examples``) are ray_tasks/stats.py's.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from ray_tasks.curate.pii import COUNT_COLUMNS
from ray_tasks.stats import breakdown, examples

PRIVACY_METRICS = (*COUNT_COLUMNS, "pii_files", "files_malware", "files_contaminated")
"""Counts of ray_tasks/curate/privacy.py's steps that are metrics too."""


def curation_stats(files_in: pa.Table, kept: pa.Table, rejected: pa.Table) -> dict[str, Any]:
    """The filters' account: files and bytes in, kept and rejected, by reason, language and license class."""
    return {
        "files_in": files_in.num_rows,
        "bytes_in": table_bytes(files_in),
        "files_kept": kept.num_rows,
        "bytes_kept": table_bytes(kept),
        "files_rejected": rejected.num_rows,
        "bytes_rejected": table_bytes(rejected),
        "rejected_by_reason": breakdown(rejected, "reason"),
        "kept_by_language": breakdown(kept, "language"),
        "kept_by_license_type": breakdown(kept, "license_type"),
        "in_by_license_type": breakdown(files_in, "license_type"),
        "kept_vendor_files": _count_true(kept, "is_vendor"),
        "rejected_examples": examples(rejected),
    }


def metrics(stats: dict) -> dict:
    """The figures DVC and MLflow track (``metrics/curate.json``); the full account stays in stats.json."""
    keys = ("files_in", "bytes_in", "files_kept", "bytes_kept", "files_rejected", "bytes_rejected", "kept_vendor_files")
    return {
        **{k: stats[k] for k in keys},
        **{k: stats[k] for k in PRIVACY_METRICS if k in stats},
        "rejected_by_reason": {k: v["files"] for k, v in stats["rejected_by_reason"].items()},
        "kept_by_license_type": {k: v["files"] for k, v in stats["kept_by_license_type"].items()},
        "kept_by_language": {k: v["files"] for k, v in list(stats["kept_by_language"].items())[:20]},
    }


def table_bytes(table: pa.Table) -> int:
    """Sum of ``length_bytes`` (0 for an empty table)."""
    return int(sum(v or 0 for v in table.column("length_bytes").to_pylist())) if table.num_rows else 0


def _count_true(table: pa.Table, column: str) -> int:
    return int(sum(1 for v in table.column(column).to_pylist() if v)) if column in table.column_names else 0
