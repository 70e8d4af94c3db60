"""License texts -> SPDX ids, with ScanCode toolkit (the scanner The Stack v2 used).

A text that is one of ScanCode's known license texts is answered by the fast first pass
(``license_known.py``: a hash of the normalised text) without loading ScanCode at all;
only the rest is scanned.

ScanCode is slow to load (its license index, ~6 s and a few hundred MB per
process) and its matching costs 5 ms-1.5 s per text, so results are cached by
the text's hash: most repositories carry one of a few dozen license texts.

Compatibility shim: ScanCode's ``plugincode`` declares hook specifications on a
class, which pluggy >= 1.6 no longer discovers (it raises "did not find any
hooks"); Prefect needs pluggy >= 1.6. The location-provider manager that fails
is only used to find an optional libmagic plugin, so the shim lets that one
registration pass empty instead of pinning pluggy back.
"""

from __future__ import annotations

import hashlib
import threading
import time
import warnings
from functools import lru_cache

_LOCK = threading.Lock()
_SCAN_DEADLINE_S = 100  # seconds per text, as in The Stack v2's get_license_types.py


def _patch_pluggy() -> None:
    import pluggy

    original = pluggy.PluginManager.add_hookspecs
    if getattr(original, "_starflow_shim", False):
        return

    def add_hookspecs(self, module_or_class):
        try:
            original(self, module_or_class)
        except ValueError as exc:
            if "did not find any" not in str(exc) or not getattr(module_or_class, "__name__", "").startswith("plugincode"):
                raise

    add_hookspecs._starflow_shim = True
    pluggy.PluginManager.add_hookspecs = add_hookspecs


@lru_cache(maxsize=1)
def _detector():
    _patch_pluggy()
    warnings.filterwarnings("ignore", module="typecode")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from licensedcode.cache import get_index
        from licensedcode.detection import detect_licenses

        get_index()  # load (or build, first time) the license index once per process
    return detect_licenses


@lru_cache(maxsize=4096)
def _scan_cached(digest: str, text: str) -> tuple[str, ...]:
    detect = _detector()
    ids: set[str] = set()
    with _LOCK:  # the index is shared and not documented as thread-safe
        # ScanCode's ``deadline`` is an absolute time.time() value, not a duration.
        detections = list(detect(query_string=text, deadline=time.time() + _SCAN_DEADLINE_S))
    for det in detections:
        expression = det.license_expression_spdx
        if expression:
            ids |= spdx_symbols(expression)
    return tuple(sorted(ids))


def scan_text(text: str) -> list[str]:
    """SPDX ids (``LicenseRef-scancode-*`` for non-SPDX licenses) detected in a text: a known
    license text's ids, else ScanCode's."""
    from ray_tasks.ingest.license_known import known_license

    if not text.strip():
        return []
    known = known_license(text)
    return known if known is not None else scancode_ids(text)


def scancode_ids(text: str) -> list[str]:
    """ScanCode alone (what the fast pass is measured against)."""
    if not text.strip():
        return []
    return list(_scan_cached(hashlib.sha1(text.encode("utf-8", "replace")).hexdigest(), text))


def spdx_symbols(expression: str) -> set[str]:
    """License ids of an SPDX expression (``MIT OR (Apache-2.0 AND BSD-3-Clause)``).

    Exceptions after WITH are kept as their own id, as ScanCode's symbols are."""
    import re

    tokens = re.findall(r"[A-Za-z0-9.+\-]+", expression)
    return {t for t in tokens if t.upper() not in {"AND", "OR", "WITH"}}
