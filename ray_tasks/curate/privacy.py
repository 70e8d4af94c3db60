"""The curate stage's malware, decontamination and PII steps, built from ``curate.*`` params.

Orchestration only: the steps live in ray_tasks (malware.py, decontaminate.py, pii.py).
Malware and decontamination are Filters appended to the stage's filter list; PII
redaction runs afterwards on the kept files, on the same Ray Data batches.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import pyarrow as pa

from ray_tasks.curate.params import CurateParams
from ray_tasks.curate.decontaminate import (
    BenchmarkFile, DecontaminationFilter, Matcher, REPORT_SCHEMA, contamination_report, load_benchmarks,
)
from ray_tasks.curate.malware import MalwareFilter, build_scanners
from ray_tasks.curate.pii import COUNT_COLUMNS, PiiConfig, count_totals, drop_count_columns, parse_types, redact_batch_counted
from ray_tasks.executor import map_batches

CONTAMINATION = "contamination.parquet"


@dataclass
class PrivacySteps:
    malware: MalwareFilter | None = None
    decontamination: DecontaminationFilter | None = None
    scanners: list[str] = field(default_factory=list)
    """Engines that actually run (a configured engine that cannot run was warned about)."""


def privacy_filters(cfg: CurateParams, log: logging.Logger | logging.LoggerAdapter | None = None) -> PrivacySteps:
    """The malware and decontamination Filters the params ask for (None where disabled)."""
    steps = PrivacySteps()
    if cfg.malware.enabled:
        m = cfg.malware
        scanners = build_scanners(m.engines, m.clamav_database, m.clamav_command, m.yara_rules, m.timeout_s)
        steps.scanners = [s.name for s in scanners]
        if set(steps.scanners) != set(m.engines) and log is not None:
            # build_scanners said why on the Python logger; say it in the flow run's log too.
            log.warning("curate: malware engines running: %s of configured %s", steps.scanners or "NONE", list(m.engines))
        if scanners:
            steps.malware = MalwareFilter(scanners)
    if cfg.decontamination.enabled:
        d = cfg.decontamination
        specs = [BenchmarkFile(f.name, f.path, tuple(f.fields), f.id_field, tuple(f.cut_before)) for f in d.files]
        steps.decontamination = DecontaminationFilter(Matcher.build(load_benchmarks(d.humaneval, specs), d.min_chars))
    return steps


def redact_kept(
    kept: pa.Table, cfg: CurateParams, mapper: Callable[..., pa.Table] = map_batches
) -> tuple[pa.Table, dict[str, int]]:
    """(kept files with PII redacted, ``pii_*`` counts and files touched); ``mapper`` runs the batches."""
    if not cfg.pii.enabled or kept.num_rows == 0:
        return kept, {c: 0 for c in COUNT_COLUMNS} | {"pii_files": 0}
    config = PiiConfig(parse_types(cfg.pii.types), cfg.pii.base64_entropy_limit, cfg.pii.hex_entropy_limit)
    counted = mapper(kept, redact_batch_counted, cfg.batch_size, {"config": config})
    touched = sum(any(row) for row in zip(*(counted.column(c).to_pylist() for c in COUNT_COLUMNS)))
    return drop_count_columns(counted), count_totals(counted) | {"pii_files": touched}


def privacy_stats(annotated: pa.Table, steps: PrivacySteps, pii_counts: dict[str, int], kept: pa.Table) -> tuple[dict, pa.Table]:
    """(stats entries for stats.json / metrics, the contamination report table)."""
    reasons = [r or "" for r in annotated.column("reason").to_pylist()]
    report = contamination_report(annotated, steps.decontamination.matcher) if steps.decontamination else REPORT_SCHEMA.empty_table()
    by_benchmark: dict[str, int] = {}
    for b in report.column("benchmark").to_pylist():
        by_benchmark[b] = by_benchmark.get(b, 0) + 1
    stats = {
        **pii_counts,
        "bytes_kept_after_pii": int(sum(v or 0 for v in kept.column("length_bytes").to_pylist())) if kept.num_rows else 0,
        "files_malware": sum(r.startswith("malware:") for r in reasons),
        "malware_scanners": steps.scanners,
        "files_contaminated": report.num_rows,
        "contaminated_by_benchmark": dict(sorted(by_benchmark.items())),
    }
    return stats, report


SUMMARY_KEYS = (*COUNT_COLUMNS, "pii_files", "files_malware", "files_contaminated")
