"""The fast first pass of license detection: a license file that *is* a known license text.

Most LICENSE/COPYING files are a standard text with their own copyright line (MIT, BSD,
Apache-2.0, the GPLs). Such a file is recognised by its normalised text (lower case, words
only, copyright lines dropped) being exactly the normalised text of one of ScanCode's own
license texts: its ``licenses/*.LICENSE`` files and its rules marked ``is_license_text``
(the variants it has collected), so the answer is the one ScanCode gives for that text, and
matching costs a hash instead of loading ScanCode's index (~6 s and hundreds of MB per
process) and aligning the text against it. Anything else (a text with changed clauses, a
README, several licenses in one file) goes to ScanCode (``license_scan.py``).

Why by hand: the pass must answer exactly what ScanCode answers, and no maintained Python
library matches texts against ScanCode's own data; other identifiers (askalono, licensee,
atarashi) use their own license lists and ids, so they would disagree with ScanCode by design.
``benchmarks/license_fastpass.py`` measures agreement with ScanCode alone on real files.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path

# A copyright statement (its own line in every license file): "Copyright (c) 2024 X", "Copyright
# [yyyy] [name of copyright owner]", "(C) 1999 Y", "All rights reserved." Body lines that merely
# start with the word ("copyright license to reproduce...", "(c) You must retain") are kept.
_COPYRIGHT_LINE = re.compile(
    r"^\s*(copyright\s*:?\s*(\(c\)|©|\d{4}|\[yyyy\]|<year>|\{year\})|(\(c\)|©)\s*\d{4}|all rights reserved)", re.I)
_WORD = re.compile(r"[a-z0-9]+")
_FRONT = re.compile(r"\A---\n(.*?)\n---\n", re.S)
MAX_TITLE_WORDS = 6
MIN_WORDS = 30
"""Shorter texts (a one-line notice) are not matched here: a short file that merely contains a
license's name is what ScanCode's rules must judge, in context."""


def normalise(text: str) -> str:
    """Words of a license text, lower case, without its copyright lines (which every copy edits)."""
    kept = [line for line in text.lower().splitlines() if not _COPYRIGHT_LINE.match(line)]
    return " ".join(_WORD.findall(" ".join(kept)))


def known_license(text: str) -> list[str] | None:
    """ScanCode's SPDX ids for a text that is one of its known license texts, as it is or under
    a short title line ("MIT License", "The BSD 3-Clause License"); None otherwise."""
    table = known_texts()
    for candidate in (text, _untitled(text)):
        words = normalise(candidate) if candidate is not None else ""
        if words.count(" ") + 1 >= MIN_WORDS:
            found = table.get(_digest(words))
            if found:
                return list(found)
    return None


def _untitled(text: str) -> str | None:
    """The text without its first line when that line is a title naming a license."""
    stripped = text.lstrip()
    first, _, rest = stripped.partition("\n")
    words = _WORD.findall(first.lower())
    if 0 < len(words) <= MAX_TITLE_WORDS and any(w in ("license", "licence") for w in words):
        return rest
    return None


def _digest(words: str) -> str:
    return hashlib.sha1(words.encode()).hexdigest()


CACHE_VERSION = 3
"""Bump when ``normalise`` or the table's contents change: the cache file is then rebuilt."""


@lru_cache(maxsize=1)
def known_texts() -> dict[str, tuple[str, ...] | None]:
    """Digest of normalised text -> sorted SPDX ids (None: ambiguous), built from ScanCode's data
    once per installation: reading its 40,000 data files takes about 5 s, so the table is kept
    beside ScanCode's own index cache, keyed by ScanCode's version (a new ScanCode, a new table)."""
    import json
    from importlib.metadata import version

    from ray_tasks.tables import write_json_atomic

    key = {"format": CACHE_VERSION, "min_words": MIN_WORDS, "scancode": version("scancode-toolkit-mini")}
    cache = _cache_dir() / "starflow_known_license_texts.json"
    try:
        stored = json.loads(cache.read_text())
        if stored.get("key") == key:
            return {d: tuple(ids) if ids else None for d, ids in stored["table"].items()}
    except (OSError, ValueError):
        pass
    table = build_known_texts()
    try:
        write_json_atomic({"key": key, "table": table}, cache)
    except OSError:  # a read-only installation: rebuilt per process, still correct
        pass
    return table


def _cache_dir() -> Path:
    from scancode_config import licensedcode_cache_dir

    return Path(licensedcode_cache_dir)


def build_known_texts() -> dict[str, tuple[str, ...] | None]:
    """Digest of normalised text -> sorted SPDX ids, from the data ScanCode ships; a digest two
    different answers share maps to None (ambiguous: ScanCode decides)."""
    data = _scancode_data()
    licenses = [_read(p) for p in sorted((data / "licenses").glob("*.LICENSE"))]
    spdx = {front["key"]: front.get("spdx_license_key") or f"LicenseRef-scancode-{front['key']}"
            for front, _ in licenses if "key" in front}
    entries = [(front["key"], body) for front, body in licenses if "key" in front and not front.get("is_deprecated")]
    for path in sorted((data / "rules").glob("*.RULE")):
        front, body = _read(path)
        if front.get("is_license_text") == "yes" and front.get("license_expression") and not front.get("is_deprecated"):
            entries.append((front["license_expression"], body))
    table: dict[str, tuple[str, ...] | None] = {}
    for expression, body in entries:
        keys = [k for k in re.findall(r"[A-Za-z0-9.+\-_]+", expression) if k.upper() not in ("AND", "OR", "WITH")]
        if not all(k in spdx for k in keys):
            continue
        words = normalise(body)
        if words.count(" ") + 1 < MIN_WORDS:
            continue
        ids = tuple(sorted({spdx[k] for k in keys}))
        digest = _digest(words)
        table[digest] = ids if table.get(digest, ids) == ids else None
    return table


def _read(path: Path) -> tuple[dict[str, str], str]:
    """(the YAML front matter's top-level scalars, the text) of a ScanCode data file; the front
    matter is read with a regex, as a YAML parser on 40,000 files costs seconds."""
    raw = path.read_text(encoding="utf-8", errors="replace")
    m = _FRONT.match(raw)
    if not m:
        return {}, raw
    front = {}
    for line in m.group(1).splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.startswith((" ", "-")) and value.strip():
            front[key.strip()] = value.strip().strip("'\"")
    return front, raw[m.end():]


def _scancode_data() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("licensedcode")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("scancode-toolkit (licensedcode) is not installed: it is ingest's license detector")
    return Path(list(spec.submodule_search_locations)[0]) / "data"
