"""What only the curate tests need: the redaction of one batch with its totals, the filters by name."""

from __future__ import annotations

import pyarrow as pa

from ray_tasks.curate.params import CurateParams, PiiParams
from ray_tasks.curate.pii import count_totals, drop_count_columns, redact_batch_counted
from ray_tasks.curate.stage import build_filters

PII = PiiParams()
"""The default PII settings (params.yaml's ``curate.pii`` as shipped)."""


def redact_batch(batch: pa.Table, params: PiiParams = PII) -> tuple[pa.Table, dict[str, int]]:
    """A batch with ``content`` redacted and the counts per type (the stage's batch function, summed)."""
    annotated = redact_batch_counted(batch, params)
    return drop_count_columns(annotated), count_totals(annotated)


def quality_filter(name: str, **quality):
    """The stage's filter called ``name``, built from ``curate.quality`` defaults updated with ``quality``."""
    cfg = CurateParams.model_validate({"quality": quality})
    return next(f for f in build_filters(cfg) if f.name == name)
