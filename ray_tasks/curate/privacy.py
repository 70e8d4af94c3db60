"""The curate stage's last cuts and its redaction, built from the ``curate.malware``,
``curate.decontamination`` and ``curate.pii`` params.

The steps themselves live beside this module (malware.py, decontaminate.py, pii.py);
this one decides which run and counts what they did. Malware and decontamination
are Filters appended to the stage's filter list (ray_tasks/curate/stage.py); PII
redaction runs afterwards on the kept files, on the same batches, on Ray or in
this process (ray_tasks/executor.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pyarrow as pa

from ray_tasks.curate.decontaminate import (
    REPORT_SCHEMA, DecontaminationFilter, build_matcher, contamination_report, contamination_stats,
)
from ray_tasks.curate.malware import MalwareFilter, build_scanners
from ray_tasks.curate.params import CurateParams
from ray_tasks.curate.pii import COUNT_COLUMNS, count_totals, drop_count_columns, redact_batch_counted
from ray_tasks.curate.stats import table_bytes
from ray_tasks.executor import map_batches


@dataclass
class PrivacySteps:
    """The malware and decontamination Filters the params ask for (None where disabled)."""

    malware: MalwareFilter | None = None
    decontamination: DecontaminationFilter | None = None
    scanners: list[str] = field(default_factory=list)
    """Engines that actually run (a configured engine that cannot run was warned about)."""


def privacy_filters(cfg: CurateParams, log: logging.Logger | logging.LoggerAdapter | None = None) -> PrivacySteps:
    """The steps ``cfg`` enables; ``log`` (the flow run's) also hears which malware engines are off."""
    steps = PrivacySteps()
    if cfg.malware.enabled:
        scanners = build_scanners(cfg.malware)
        steps.scanners = [s.name for s in scanners]
        if set(steps.scanners) != set(cfg.malware.engines) and log is not None:
            # build_scanners said why on the Python logger; say it in the flow run's log too.
            log.warning("curate: malware engines running: %s of configured %s",
                        steps.scanners or "NONE", list(cfg.malware.engines))
        if scanners:
            steps.malware = MalwareFilter(scanners)
    if cfg.decontamination.enabled:
        steps.decontamination = DecontaminationFilter(build_matcher(cfg.decontamination))
    return steps


def redact_kept(kept: pa.Table, cfg: CurateParams, use_ray: bool) -> tuple[pa.Table, dict[str, int]]:
    """(kept files with PII redacted, ``pii_*`` counts and files touched), in ``cfg.batch_size`` batches."""
    if not cfg.pii.enabled:
        return kept, {c: 0 for c in COUNT_COLUMNS} | {"pii_files": 0}
    if kept.num_rows == 0:  # still through the redaction: an empty part gets the column types the others get
        counted = redact_batch_counted(kept, cfg.pii)
    else:
        counted = map_batches(kept, redact_batch_counted, cfg.batch_size, {"params": cfg.pii}, use_ray=use_ray)
    touched = sum(any(row) for row in zip(*(counted.column(c).to_pylist() for c in COUNT_COLUMNS)))
    return drop_count_columns(counted), count_totals(counted) | {"pii_files": touched}


def privacy_stats(annotated: pa.Table, steps: PrivacySteps, pii_counts: dict[str, int], kept: pa.Table) -> tuple[dict, pa.Table]:
    """(stats entries for stats.json / metrics, the contamination report table)."""
    reasons = [r or "" for r in annotated.column("reason").to_pylist()]
    report = contamination_report(annotated, steps.decontamination.matcher) if steps.decontamination else REPORT_SCHEMA.empty_table()
    stats = {
        **pii_counts,
        "bytes_kept_after_pii": table_bytes(kept),
        "files_malware": sum(r.startswith("malware:") for r in reasons),
        "malware_scanners": steps.scanners,
        **contamination_stats(report),
    }
    return stats, report
