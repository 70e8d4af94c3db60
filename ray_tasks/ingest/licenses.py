"""License detection per repository, propagated to files, and The Stack v2's license classes.

Where licenses come from (the StarCoder2 paper, https://arxiv.org/abs/2402.19173, §2.1, Fig. 1):
- a source's own metadata when it has any (GitHub's ``gha_license_id``; PyPI's
  ``License-Expression``, trove classifiers or ``License`` field): the *declared* license;
- otherwise ScanCode on license-like files (go-license-detector's file-name
  pattern: LICENSE*, COPYING*, NOTICE*, README*...). A license file applies to
  its own directory subtree, so a vendored ``third_party/x/LICENSE`` only
  licenses ``third_party/x/...``; a file gets the union over its ancestors.

``license_type`` follows the paper's algorithm, including its two quirks: a
permissive declared license overrides everything, and an ``unknown license
reference`` next to a permissive license is ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable
from importlib import resources

PERMISSIVE, NO_LICENSE, NON_PERMISSIVE = "permissive", "no_license", "non_permissive"

# go-license-detector's file-name pattern, as used by The Stack v2.
LICENSE_FILE_RE = re.compile(
    r"^(|.*[-_. ])(li[cs]en[cs]e(s?)|legal|copy(left|right|ing)|unlicense|[al]?gpl([-_ v]?)(\d\.?\d?)?"
    r"|bsd(l?)|mit(x?)|apache|artistic|copying(v?)(\d?)|disclaimer|eupl|gfdl|[cm]pl|cc0"
    r"|al([-_ v]?)(\d\.?\d)?|about|notice|readme|guidelines)(|[-_. ].*)$",
    re.IGNORECASE,
)

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
    text = resources.files("ray_tasks.ingest").joinpath("data/permissive_licenses.txt").read_text()
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def spdx_from_expression(expression: str) -> set[str]:
    """License ids in an SPDX expression (``MIT OR Apache-2.0`` -> {MIT, Apache-2.0})."""
    ops = {"AND", "OR", "WITH"}
    return {t.rstrip("+") for t in _SPDX_TOKEN.findall(expression) if t.upper() not in ops}


def licenses_from_text(text: str) -> set[str]:
    """SPDX ids ScanCode finds in a license text."""
    from ray_tasks.ingest.license_scan import scan_text

    return set(scan_text(text))


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


# ScanCode ids that are neither permissive nor restrictive (CLAs, disclaimers...):
# alone they make ``no_license``, never ``non_permissive`` (the paper's "extras").
NEUTRAL = frozenset(
    f"LicenseRef-scancode-{k}"
    for k in ("dco-1.1", "generic-cla", "google-cla", "jetty-ccla-1.1", "newton-king-cla", "generic-exception",
              "generic-export-compliance", "generic-tos", "generic-trademark", "warranty-disclaimer")
)
UNKNOWN_REFERENCE = "LicenseRef-scancode-unknown-license-reference"
NOASSERTION = "NOASSERTION"


def classify(detected: set[str] | list[str], declared: set[str] | list[str] | None = None) -> str:
    """The paper's license_type from detected ids and the source's declared license(s)."""
    allowed = permissive_licenses()
    declared = set(declared or ())
    stated = declared - {NOASSERTION}
    if stated:
        return PERMISSIVE if stated <= allowed else NON_PERMISSIVE
    detected = set(detected)
    if not detected:
        return NON_PERMISSIVE if NOASSERTION in declared else NO_LICENSE
    permissive = detected & allowed
    restrictive = detected - allowed - NEUTRAL
    if permissive:
        restrictive.discard(UNKNOWN_REFERENCE)
    if permissive and not restrictive:
        return PERMISSIVE
    if not permissive and not restrictive:
        return NO_LICENSE
    return NON_PERMISSIVE


def is_license_file(name: str) -> bool:
    return bool(LICENSE_FILE_RE.match(name))


README_HEAD_CHARS = 20_000
"""READMEs are scanned only in their head: the license statement sits there or in
a short section, and scanning whole manuals costs seconds each."""
MAX_LICENSE_CHARS = 200_000


# Documents a license-like name may carry; ``licenses.py`` or ``license_check.go`` is code, not a license.
DOCUMENT_LANGUAGES = {None, "Text", "Markdown", "reStructuredText", "HTML", "AsciiDoc", "Org", "Rich Text Format", "TeX"}


def license_candidates(paths: list[str]) -> list[str]:
    """Repository paths whose file name looks like a license, notice or readme (and is not code)."""
    from ray_tasks.language import detect_language

    out = []
    for p in paths:
        name = p.rsplit("/", 1)[-1]
        if is_license_file(name) and ("." not in name.strip(".") or detect_language(name) in DOCUMENT_LANGUAGES):
            out.append(p)
    return out


@dataclass
class RepoLicenses:
    """Licenses found in one repository, by the directory they apply to ('' = root)."""

    declared: list[str] = field(default_factory=list)
    by_dir: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, list[str]] = field(default_factory=dict)
    """License file path -> ids found in it (what ``starflow license detect`` reports)."""

    def detected_for(self, path: str) -> list[str]:
        found: set[str] = set()
        for directory, ids in self.by_dir.items():
            if path.startswith(directory):
                found.update(ids)
        return sorted(found)

    def type_for(self, path: str) -> str:
        return classify(self.detected_for(path), self.declared)

    @property
    def repo_licenses(self) -> list[str]:
        return sorted(set(self.declared) | {i for ids in self.by_dir.values() for i in ids})

    @property
    def repo_type(self) -> str:
        """The class of the repository root (what its top-level files get)."""
        return classify(self.by_dir.get("", []), self.declared)


def scan_repository(paths: list[str], read_text: Callable[[str], str | None], declared: list[str] | None = None) -> RepoLicenses:
    """Scan a repository's license-like files (``read_text(path)`` gives their text or None)."""
    result = RepoLicenses(declared=sorted(set(declared or ())))
    for path in license_candidates(paths):
        text = read_text(path)
        if not text:
            continue
        name = path.rsplit("/", 1)[-1]
        text = text[:README_HEAD_CHARS] if name.lower().startswith("readme") else text[:MAX_LICENSE_CHARS]
        ids = sorted(licenses_from_text(text))
        if not ids:
            continue
        result.files[path] = ids
        directory = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
        result.by_dir[directory] = sorted(set(result.by_dir.get(directory, [])) | set(ids))
    return result
