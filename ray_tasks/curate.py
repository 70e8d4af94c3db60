"""The curation step list and how an annotated table splits into kept and rejected.

Order matters only for which reason a file is charged with: license first
(cheapest, and the paper's first cut), then language, then quality.
"""

from __future__ import annotations

from typing import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from ray_tasks.filters import AlphaFilter, Filter, LanguageFilter, LicenseFilter, LineLengthFilter
from ray_tasks.tables import rejected_from


def build_filters(
    keep_license_types: Sequence[str],
    drop_unknown_language: bool,
    max_lines: int,
    max_avg_line_length: float,
    max_line_length: int,
    exempt_max_line_length: int,
    min_alpha_fraction: float,
) -> list[Filter]:
    steps: list[Filter] = [LicenseFilter(list(keep_license_types))]
    if drop_unknown_language:
        steps.append(LanguageFilter())
    steps.append(LineLengthFilter(max_lines, max_avg_line_length, max_line_length, exempt_max_line_length))
    steps.append(AlphaFilter(min_alpha_fraction))
    return steps


def split_annotated(annotated: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(kept files with their ``language``, rejected rows with reasons)."""
    keep = annotated.column("keep")
    kept = annotated.filter(keep).drop_columns(["keep", "reason"])
    dropped = annotated.filter(pc.invert(keep))
    rejected = rejected_from(dropped, "curate", dropped.column("reason").to_pylist(), dropped.column("language").to_pylist())
    return kept, rejected
