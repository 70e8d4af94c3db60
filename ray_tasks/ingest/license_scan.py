"""License texts -> SPDX ids, with ScanCode toolkit (the scanner The Stack v2 used).

A text that is one of ScanCode's known license texts is answered by the fast first pass
(``license_known.py``: a hash of the normalised text) without loading ScanCode at all;
only the rest is scanned.

ScanCode is slow to load (its license index, ~6 s and a few hundred MB per
process) and its matching costs 5 ms-1.5 s per text, so results are cached by
the text's hash: in this process, and on disk when the stage names a folder
(``result_cache``): one small JSON per text, named by the sha256 of the exact text
handed to ScanCode, under a folder named by ScanCode's version and this module's
code (``cache_version``). A text scanned before, in any repository and any run,
then costs no ScanCode call, and a process whose texts all hit never loads the
index. The folder is only ever an optimisation: a folder that cannot be read or
written (a worker of a cluster without a shared filesystem) just means a scan.

Compatibility shim: ScanCode's ``plugincode`` declares hook specifications on a
class, which pluggy >= 1.6 no longer discovers (it raises "did not find any
hooks"); Prefect needs pluggy >= 1.6. The location-provider manager that fails
is only used to find an optional libmagic plugin, so the shim lets that one
registration pass empty instead of pinning pluggy back.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
import warnings
from collections import Counter
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Iterator

_LOCK = threading.Lock()
_SCAN_DEADLINE_S = 100  # seconds per text, as in The Stack v2's get_license_types.py

COUNTS: Counter[str] = Counter()
"""This process's ScanCode counters: ``scans`` (texts ScanCode matched) and ``cache_hits``
(texts answered by the on-disk cache), for the stage's account of what it computed."""

_CACHE_ROOT: Path | None = None
"""The on-disk result cache in use (``result_cache``); None: none."""


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
    """ScanCode's ids for ``text`` (``digest`` its sha256): from the disk cache when it has them,
    else scanned (and stored there)."""
    folder = _version_folder()
    stored = _read_result(folder, digest) if folder is not None else None
    if stored is not None:
        COUNTS["cache_hits"] += 1
        _KEPT.add((folder, digest))
        return stored
    ids = _scan(text)
    COUNTS["scans"] += 1
    if folder is not None:  # absent or damaged there: (re)written
        _write_result(folder, digest, ids)
        _KEPT.add((folder, digest))
    return ids


_KEPT: set[tuple[Path, str]] = set()
"""(folder, digest) of results this process knows the folder holds."""


def _keep(digest: str, ids: tuple[str, ...]) -> None:
    """Make sure the folder in use holds this result: also when it came from this process's memory
    (scanned before the folder was set, or for another folder)."""
    folder = _version_folder()
    if folder is None or (folder, digest) in _KEPT:
        return
    if not _result_path(folder, digest).is_file():
        _write_result(folder, digest, ids)
    _KEPT.add((folder, digest))


def _scan(text: str) -> tuple[str, ...]:
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
    digest = text_digest(text)
    ids = _scan_cached(digest, text)
    _keep(digest, ids)
    return list(ids)


def text_digest(text: str) -> str:
    """sha256 of the exact text (surrogates kept: a table source's text may hold them)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


# --------------------------------------------------------------------------- on-disk result cache
@contextmanager
def result_cache(root: str | Path | None) -> Iterator[None]:
    """ScanCode results of this block read from and written to ``root`` (None: no disk cache),
    as the stage's tasks run: ``Repository.licenses`` scans lazily, deep inside a task, so the
    folder is this module's setting for the duration of the task rather than an argument."""
    global _CACHE_ROOT
    previous, _CACHE_ROOT = _CACHE_ROOT, Path(root) if root is not None else None
    try:
        yield
    finally:
        _CACHE_ROOT = previous


@lru_cache(maxsize=1)
def cache_version() -> str:
    """What a cached result depends on besides the text: ScanCode's version (its rules and index)
    and this module's code (how its detections become ids, the deadline)."""
    from importlib.metadata import PackageNotFoundError, version

    h = hashlib.sha256(Path(__file__).read_bytes())
    for name in ("scancode-toolkit", "scancode-toolkit-mini"):
        try:
            h.update(f"{name}={version(name)}\n".encode())
        except PackageNotFoundError:
            h.update(f"{name}=-\n".encode())
    return h.hexdigest()[:16]


def _version_folder() -> Path | None:
    return _CACHE_ROOT / cache_version() if _CACHE_ROOT is not None else None


def _result_path(folder: Path, digest: str) -> Path:
    return folder / digest[:2] / f"{digest}.json"


def _read_result(folder: Path, digest: str) -> tuple[str, ...] | None:
    """A stored result; None when absent or unreadable (a torn or foreign file is a miss)."""
    try:
        stored = json.loads(_result_path(folder, digest).read_text())
        ids = stored["ids"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return None
    return tuple(ids)


def _write_result(folder: Path, digest: str, ids: tuple[str, ...]) -> None:
    """Store a result atomically (a temp file in the same folder, renamed); a folder that cannot be
    written is no error: the result was computed, only not kept."""
    path = _result_path(folder, digest)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"ids": list(ids)}))
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


def prune_cache(root: str | Path) -> None:
    """Drop results of other ScanCode or code versions under ``root`` (never asked for again)."""
    root = Path(root)
    if not root.is_dir():
        return
    for folder in root.iterdir():
        if folder.is_dir() and folder.name != cache_version():
            shutil.rmtree(folder, ignore_errors=True)


def spdx_symbols(expression: str) -> set[str]:
    """License ids of an SPDX expression (``MIT OR (Apache-2.0 AND BSD-3-Clause)``).

    Exceptions after WITH are kept as their own id, as ScanCode's symbols are."""
    import re

    tokens = re.findall(r"[A-Za-z0-9.+\-]+", expression)
    return {t for t in tokens if t.upper() not in {"AND", "OR", "WITH"}}
