"""Trace a text to the training set: which spans of it are there, in which files, under which license.

    att = Attribution.open(Path("data/attribution"), params.attribution)
    report = att.trace(text)       # spans, files (repository, path, licenses), overlap fraction

First pass: the portrait tests the window at every offset of the text (one Bloom look-up each);
runs of hits become candidate regions (one window is enough: a 100-character copy may hold a
single indexed window). Second pass: each region's words go to the full-text index as a phrase;
every returned file is checked verbatim, window by window, a confirmed span is grown to the
longest common run around it, and spans shorter than ``min_span_chars`` are dropped (a text
shorter than that must be found whole). Only verified characters count, so a Bloom false
positive costs one phrase query and never reaches the report.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ray_tasks.attribution import fulltext, portrait, stage
from ray_tasks.attribution.params import AttributionParams


@dataclass
class Attribution:
    portrait: portrait.Portrait
    fulltext: fulltext.FullText
    manifest: dict
    params: AttributionParams

    @classmethod
    def open(cls, folder: Path, params: AttributionParams) -> "Attribution":
        manifest_file = folder / stage.MANIFEST
        if not manifest_file.exists():
            raise FileNotFoundError(f"{folder}: no attribution index (run `starflow stage attribution`)")
        manifest = json.loads(manifest_file.read_text())
        filters = [folder / s["portrait"] for s in manifest["segments"]]
        return cls(portrait.Portrait.load(filters, manifest["settings"]["window_chars"]),
                   fulltext.FullText(folder / stage.FULLTEXT), manifest, params)

    def trace(self, text: str) -> dict:
        """Verified spans of ``text`` found in training files, the best files, and the overlap fraction."""
        width = self.portrait.width
        # A text shorter than min_span_chars is reported only when all of it is in one file; its
        # first pass can then hold a single indexed window, so any hit is a region to verify.
        shortest = min(self.params.min_span_chars, len(text))
        region_min = min(shortest, width)
        hits = self.portrait.hits(text)
        regions = [r for r in _runs(hits, width, len(text)) if r[1] - r[0] >= region_min]
        per_file: dict[tuple[str, str], dict] = {}
        exact = self.fulltext.by_sha256(hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(),
                                        self.params.top_files)
        for doc in exact:  # the file itself (sha256 names the source file; PII redaction may have changed it)
            if doc["content"] == text and text:
                per_file[(doc["repo_name"], doc["path"])] = {"doc": doc, "spans": {(0, len(text), 0)}, "exact": True}
        for lo, hi in regions:
            for doc in self.fulltext.candidates(text[lo:hi], self.params.max_candidates):
                for span in _verified_spans(text, doc["content"], hits[(hits >= lo) & (hits < hi)], width):
                    if span[1] - span[0] >= shortest:
                        entry = per_file.setdefault((doc["repo_name"], doc["path"]), {"doc": doc, "spans": set()})
                        entry["spans"].add(span)
        return self._report(text, hits, regions, per_file, exact)

    def _report(self, text, hits, regions, per_file, exact) -> dict:
        files = []
        covered = np.zeros(len(text), dtype=bool)
        for (repo, path), entry in per_file.items():
            spans = _merge(sorted(entry["spans"]))
            mask = np.zeros(len(text), dtype=bool)
            for s in spans:
                mask[s[0]:s[1]] = True
            covered |= mask
            files.append({**_identity(entry["doc"]), "matched_chars": int(mask.sum()), "exact": entry.get("exact", False),
                          "spans": [{"start": s[0], "end": s[1], "file_start": s[2]} for s in spans]})
        files.sort(key=lambda f: (-f["matched_chars"], not f["exact"], f["repo_name"], f["path"]))
        spans = _merge([(int(i), int(i) + 1, 0) for i in np.flatnonzero(covered)])
        return {
            "chars": len(text),
            "matched_chars": int(covered.sum()),
            "overlap_fraction": round(float(covered.mean()), 4) if len(text) else 0.0,
            "spans": [{"start": s, "end": e, "text": text[s:e]} for s, e, _ in spans],
            "files": files[: self.params.top_files],
            "exact_file": [_identity(d) for d in exact],
            "first_pass": {"windows": max(len(text) - self.portrait.width + 1, 0), "hits": int(len(hits)),
                           "regions": len(regions)},
            "data_version": self.manifest.get("data_version"),
        }

    def memorised(self, texts: list[str]) -> dict:
        """Share of the characters of ``texts`` found verbatim in the training data (the memorisation figure)."""
        total = matched = with_match = 0
        for text in texts:
            covered = self.trace(text)["matched_chars"] if text else 0
            total, matched, with_match = total + len(text), matched + covered, with_match + (covered > 0)
        return {"chars": total, "memorised_chars": matched, "share": round(matched / total, 6) if total else 0.0,
                "samples": len(texts), "samples_with_match": with_match}


def _identity(doc: dict) -> dict:
    return {k: doc[k] for k in ("repo_name", "path", "license_type", "detected_licenses", "sha256")}


def _runs(hits: np.ndarray, width: int, n: int) -> list[tuple[int, int]]:
    """Merge the hit windows ``[i, i + width)`` into maximal regions."""
    out: list[list[int]] = []
    for i in hits.tolist():
        end = min(i + width, n) if n >= width else n
        if out and i <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([i, end])
    return [(a, b) for a, b in out]


def _verified_spans(text: str, content: str, offsets: np.ndarray, width: int) -> list[tuple[int, int, int]]:
    """Spans ``(start, end, start in content)`` of ``text`` that ``content`` holds verbatim: each hit
    window present in ``content`` is grown left and right while the characters agree."""
    spans: list[tuple[int, int, int]] = []
    reach = -1
    for i in offsets.tolist():
        if i < reach:
            continue  # inside a span already grown
        window = text[i:i + width]
        at = content.find(window)
        if at < 0:
            continue
        lo, clo = i, at
        while lo > 0 and clo > 0 and text[lo - 1] == content[clo - 1]:
            lo, clo = lo - 1, clo - 1
        hi, chi = i + len(window), at + len(window)
        while hi < len(text) and chi < len(content) and text[hi] == content[chi]:
            hi, chi = hi + 1, chi + 1
        spans.append((lo, hi, clo))
        reach = hi
    return spans


def _merge(spans: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    out: list[list[int]] = []
    for s, e, f in spans:
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e, f])
    return [tuple(x) for x in out]
