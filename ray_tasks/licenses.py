"""Repository license detection and The Stack v2's license classes.

A repository's licenses come from metadata when the source has any (PyPI's
``License-Expression``, trove classifiers, the ``License`` field; GitHub's
``gha_license_id``) and otherwise from license-like files. The class follows the
paper (stack_v2_curation.md §3): any permissive license with nothing
non-permissive -> ``permissive``; nothing detected -> ``no_license``; anything
else -> ``non_permissive``.

The text matcher below is a phrase table, not ScanCode: it recognises the
common license texts by their distinctive sentences. It is the first cut the
walking skeleton needs; a real scanner replaces it in the curation issue.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

PERMISSIVE, NO_LICENSE, NON_PERMISSIVE = "permissive", "no_license", "non_permissive"

# go-license-detector's file-name pattern, as used by The Stack v2.
LICENSE_FILE_RE = re.compile(
    r"^(|.*[-_. ])(li[cs]en[cs]e(s?)|legal|copy(left|right|ing)|unlicense|[al]?gpl([-_ v]?)(\d\.?\d?)?"
    r"|bsd(l?)|mit(x?)|apache|artistic|copying(v?)(\d?)|disclaimer|eupl|gfdl|[cm]pl|cc0"
    r"|al([-_ v]?)(\d\.?\d)?|about|notice|readme|guidelines)(|[-_. ].*)$",
    re.IGNORECASE,
)

# Distinctive sentences -> SPDX id. Order matters: the first match of a group wins.
_TEXT_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("AGPL-3.0", re.compile(r"GNU AFFERO GENERAL PUBLIC LICENSE", re.I)),
    ("LGPL-3.0", re.compile(r"GNU LESSER GENERAL PUBLIC LICENSE\s+Version 3", re.I)),
    ("LGPL-2.1", re.compile(r"GNU LESSER GENERAL PUBLIC LICENSE\s+Version 2\.1", re.I)),
    ("LGPL-2.0", re.compile(r"GNU LIBRARY GENERAL PUBLIC LICENSE", re.I)),
    ("GPL-3.0", re.compile(r"GNU GENERAL PUBLIC LICENSE\s+Version 3", re.I)),
    ("GPL-2.0", re.compile(r"GNU GENERAL PUBLIC LICENSE\s+Version 2", re.I)),
    ("MPL-2.0", re.compile(r"Mozilla Public License,?\s+(Version|v\.?)\s*2\.0", re.I)),
    ("EPL-2.0", re.compile(r"Eclipse Public License\s*-?\s*v?\s*2\.0", re.I)),
    ("Apache-2.0", re.compile(r"Apache License,?\s+Version 2\.0", re.I)),
    ("PSF-2.0", re.compile(r"PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2", re.I)),
    ("MIT", re.compile(r"Permission is hereby granted, free of charge, to any person", re.I)),
    ("ISC", re.compile(r"Permission to use, copy, modify, and(/or)? distribute this software for any\s+purpose with or without fee", re.I)),
    ("BSD-3-Clause", re.compile(r"Redistribution and use in source and binary forms.*?(Neither the name|endorse or promote)", re.I | re.S)),
    ("BSD-2-Clause", re.compile(r"Redistribution and use in source and binary forms", re.I)),
    ("Unlicense", re.compile(r"This is free and unencumbered software released into the public domain", re.I)),
    ("BSL-1.0", re.compile(r"Boost Software License", re.I)),
    ("Zlib", re.compile(r"This software is provided 'as-is', without any express or implied", re.I)),
    ("CC0-1.0", re.compile(r"CC0 1\.0 Universal", re.I)),
]

# Short names found in PyPI ``License:`` fields and trove classifiers.
_NAME_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("AGPL-3.0", re.compile(r"\bAGPL|Affero", re.I)),
    ("LGPL-3.0", re.compile(r"\bLGPL\s*-?v?3|Lesser General Public License v3", re.I)),
    ("LGPL-2.1", re.compile(r"\bLGPL|Lesser General Public License", re.I)),
    ("GPL-3.0", re.compile(r"\bGPL\s*-?v?3|General Public License v3", re.I)),
    ("GPL-2.0", re.compile(r"\bGPL|General Public License", re.I)),
    ("MPL-2.0", re.compile(r"\bMPL|Mozilla Public License", re.I)),
    ("EPL-2.0", re.compile(r"\bEPL|Eclipse Public License", re.I)),
    ("Apache-2.0", re.compile(r"Apache", re.I)),
    ("PSF-2.0", re.compile(r"\bPSF\b|Python Software Foundation", re.I)),
    ("MIT", re.compile(r"\bMIT\b|Expat", re.I)),
    ("ISC", re.compile(r"\bISC\b", re.I)),
    ("BSD-3-Clause", re.compile(r"\bBSD\b", re.I)),
    ("Unlicense", re.compile(r"Unlicense", re.I)),
    ("BSL-1.0", re.compile(r"Boost", re.I)),
    ("Zlib", re.compile(r"\bzlib", re.I)),
    ("CC0-1.0", re.compile(r"CC0|Public Domain", re.I)),
]

_SPDX_TOKEN = re.compile(r"[A-Za-z0-9.+\-]+")


@lru_cache(maxsize=1)
def permissive_licenses() -> frozenset[str]:
    text = resources.files("ray_tasks").joinpath("data/permissive_licenses.txt").read_text()
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def spdx_from_expression(expression: str) -> set[str]:
    """License ids in an SPDX expression (``MIT OR Apache-2.0`` -> {MIT, Apache-2.0})."""
    ops = {"AND", "OR", "WITH"}
    return {t.rstrip("+") for t in _SPDX_TOKEN.findall(expression) if t.upper() not in ops}


def licenses_from_text(text: str) -> set[str]:
    """SPDX ids whose distinctive sentence appears in a license text (first match per family)."""
    found: set[str] = set()
    for spdx, pattern in _TEXT_RULES:
        if spdx == "BSD-2-Clause" and "BSD-3-Clause" in found:
            continue
        if pattern.search(text):
            found.add(spdx)
    return found


def licenses_from_name(name: str) -> set[str]:
    """The SPDX id for a short license name ("MIT License", "Apache 2.0", "BSD")."""
    for spdx, pattern in _NAME_RULES:
        if pattern.search(name):
            return {spdx}
    return set()


def licenses_from_metadata(metadata) -> set[str]:
    """Licenses declared by a distribution's core metadata (an ``email.message.Message``)."""
    expression = metadata.get("License-Expression")
    if expression:
        return spdx_from_expression(expression)
    found: set[str] = set()
    for classifier in metadata.get_all("Classifier") or []:
        if classifier.startswith("License ::") and classifier.strip() != "License :: OSI Approved":
            found |= licenses_from_name(classifier.split("::")[-1])
    if found:
        return found
    field = (metadata.get("License") or "").strip()
    if field and field.upper() not in {"UNKNOWN", "NONE"}:
        return licenses_from_text(field) if len(field) > 200 else licenses_from_name(field)
    return set()


def classify(detected: set[str] | list[str]) -> str:
    """The paper's license_type for a set of detected SPDX ids."""
    detected = set(detected)
    if not detected:
        return NO_LICENSE
    allowed = permissive_licenses()
    if detected & allowed and not detected - allowed:
        return PERMISSIVE
    return NON_PERMISSIVE


def is_license_file(name: str) -> bool:
    return bool(LICENSE_FILE_RE.match(name))
