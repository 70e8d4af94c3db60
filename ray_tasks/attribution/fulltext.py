"""The full-text index: tantivy (https://github.com/quickwit-oss/tantivy-py), BM25-ranked phrase
queries over the training files, with repository, path and licenses stored beside the content.

It is the second pass: the portrait says *that* some windows of a query are in the set, the
index says *where*. A span's words become a phrase query (tantivy's default analyzer: split on
non-alphanumerics, lower-case, tokens over 40 bytes dropped; ``ANALYZER`` is the same chain, so
the query's terms are the indexed ones); the files it returns are then checked verbatim.
Growing the set adds documents to the same index (tantivy writes them as new segments).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

import tantivy

STORED = ("repo_name", "path", "sha256", "license_type", "detected_licenses", "content")
ANALYZER = (tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
            .filter(tantivy.Filter.remove_long(40)).filter(tantivy.Filter.lowercase()).build())


def schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    for name in ("repo_name", "path", "sha256", "license_type"):
        builder.add_text_field(name, stored=True, tokenizer_name="raw")
    builder.add_text_field("detected_licenses", stored=True, index_option="basic", tokenizer_name="raw")
    builder.add_text_field("content", stored=True)  # the default analyzer, with positions
    builder.add_unsigned_field("segment", stored=True, indexed=True)
    return builder.build()


def create(folder: Path) -> tantivy.Index:
    folder.mkdir(parents=True, exist_ok=True)
    return tantivy.Index(schema(), path=str(folder))


def open_index(folder: Path) -> tantivy.Index:
    return tantivy.Index.open(str(folder))


def add_rows(index: tantivy.Index, batches: Iterable[list[dict]], segment: int, heap_mb: int) -> int:
    """Index batches of rows (``repo_name, path, sha256, license_type, detected_licenses, content``)
    with one writer and one commit: tantivy flushes a segment whenever its heap fills, so memory
    stays bounded by ``heap_mb`` while the batches stream through."""
    # tantivy needs at least 15 MB of heap per indexing thread (and uses at most 8)
    threads = max(1, min(os.cpu_count() or 1, heap_mb // 16, 8))
    writer = index.writer(heap_mb * 2**20, threads)
    n = 0
    for rows in batches:
        for row in rows:
            doc = tantivy.Document(
                repo_name=row["repo_name"], path=row["path"], sha256=row["sha256"] or "",
                license_type=row.get("license_type") or "",
                detected_licenses=json.dumps(row.get("detected_licenses") or []),
                content=row["content"] or "")
            doc.add_unsigned("segment", segment)
            writer.add_document(doc)
            n += 1
    writer.commit()
    writer.wait_merging_threads()
    return n


class FullText:
    """An opened index: phrase/BM25 candidates for a span, exact look-ups by sha256."""

    def __init__(self, folder: Path):
        self.index = open_index(folder)
        self.schema = self.index.schema
        self.searcher = self.index.searcher()

    def candidates(self, span: str, limit: int) -> list[dict]:
        """Training files holding the span's words as a phrase (BM25 order); if none, the best BM25
        matches of its words, so that a span whose edges cut words still finds its file."""
        words = [t for t in ANALYZER.analyze(span)]
        inner = words[1:-1] if len(words) > 3 else words  # the edge words may be cut mid-word
        if not inner:
            return []
        docs = self._search(self._phrase(inner), limit)
        if not docs:
            docs = self._search(tantivy.Query.boolean_query(
                [(tantivy.Occur.Should, tantivy.Query.term_query(self.schema, "content", w)) for w in set(inner)]), limit)
        return docs

    def by_sha256(self, sha256: str, limit: int) -> list[dict]:
        return self._search(tantivy.Query.term_query(self.schema, "sha256", sha256), limit)

    def _phrase(self, words: list[str]) -> tantivy.Query:
        if len(words) == 1:
            return tantivy.Query.term_query(self.schema, "content", words[0])
        return tantivy.Query.phrase_query(self.schema, "content", words)

    def _search(self, query: tantivy.Query, limit: int) -> list[dict]:
        hits = self.searcher.search(query, limit).hits
        return [_fields(self.searcher.doc(address)) for _, address in hits]


def _fields(doc: tantivy.Document) -> dict:
    d = doc.to_dict()
    out = {k: (d.get(k) or [""])[0] for k in STORED}
    out["detected_licenses"] = json.loads(out["detected_licenses"] or "[]")
    return out
