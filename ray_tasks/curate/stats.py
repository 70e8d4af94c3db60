"""The curate stage's account: ``stats.json`` (everything) and the metrics DVC and MLflow track.

``files_in == files_kept + files_rejected`` always holds; the shared helpers
(``breakdown``, ``examples``) are ray_tasks/stats.py's. The stage counts each input part on
its own (a partial account, the same keys) and ``merge_accounts`` adds them up in part order,
which gives exactly the account of the whole table: sums, breakdowns re-sorted as ``breakdown``
sorts them, the first examples per reason in row order.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable

import pyarrow as pa

from ray_tasks.curate.pii import COUNT_COLUMNS
from ray_tasks.stats import EXAMPLES_PER_REASON, breakdown, examples

PRIVACY_METRICS = (*COUNT_COLUMNS, "pii_files", "files_malware", "files_contaminated")
"""Counts of ray_tasks/curate/privacy.py's steps that are metrics too."""
BREAKDOWNS = ("rejected_by_reason", "kept_by_language", "kept_by_license_type", "in_by_license_type")
"""Entries of the account that are ``{value: {"files", "bytes"}}`` (``ray_tasks.stats.breakdown``)."""
SAME_IN_EVERY_PART = ("malware_scanners",)
"""Entries that describe the run, not the data: equal in every part's account."""


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


def merge_accounts(accounts: Iterable[dict[str, Any]], per_reason: int = EXAMPLES_PER_REASON) -> dict[str, Any]:
    """One account from the parts' accounts, taken in part order: what the whole table gives.

    Counts add up; breakdowns add per value and are re-sorted (most files first, then by
    value, as ``breakdown`` sorts); ``rejected_examples`` keeps the first ``per_reason`` per
    reason in part order (each part's are its first in row order); per-benchmark counts add."""
    merged: dict[str, Any] = {}
    for account in accounts:
        if not merged:
            merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in account.items()}
            merged["rejected_examples"] = {k: list(v) for k, v in account.get("rejected_examples", {}).items()}
            continue
        if merged.keys() != account.keys():
            raise ValueError(f"curate: part accounts differ in keys: {sorted(merged.keys() ^ account.keys())}")
        for key, value in account.items():
            if key in BREAKDOWNS:
                merged[key] = _add_breakdowns(merged[key], value)
            elif key == "rejected_examples":
                for reason, paths in value.items():
                    have = merged[key].setdefault(reason, [])
                    have.extend(paths[: max(0, per_reason - len(have))])
            elif key == "contaminated_by_benchmark":
                merged[key] = dict(Counter(merged[key]) + Counter(value))
            elif key in SAME_IN_EVERY_PART:
                if merged[key] != value:
                    raise ValueError(f"curate: parts ran with different {key}: {merged[key]} vs {value}")
            else:
                merged[key] = merged[key] + value
    for key in BREAKDOWNS:  # in breakdown's order again (an account read back from JSON is sorted by key)
        if key in merged:
            merged[key] = _add_breakdowns({}, merged[key])
    if "rejected_examples" in merged:
        merged["rejected_examples"] = dict(sorted(merged["rejected_examples"].items()))
    if "contaminated_by_benchmark" in merged:
        merged["contaminated_by_benchmark"] = dict(sorted(merged["contaminated_by_benchmark"].items()))
    return merged


def _add_breakdowns(a: dict[str, dict[str, int]], b: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    acc = {k: dict(v) for k, v in a.items()}
    for value, entry in b.items():
        have = acc.setdefault(value, {"files": 0, "bytes": 0})
        have["files"] += entry["files"]
        have["bytes"] += entry["bytes"]
    return dict(sorted(acc.items(), key=lambda kv: (-kv[1]["files"], kv[0])))
