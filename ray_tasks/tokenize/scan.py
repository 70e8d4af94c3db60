"""The first pass over the input: bytes per repository (the split), which part holds each
repository (the encoding), and the tokenizer's training sample, drawn while streaming.

The sample is the one the stage always took: files in the order of ``sha256(seed:file sha256)``
(of ``seed:row number`` without a sha256 column), from the first, until about
``train_max_bytes`` characters (the file that crosses the bar included). Streaming keeps only
the candidates that can still be in it: a max-heap of the smallest keys, whose largest is
dropped while the others alone reach the bar. So memory is the sample's size, not the input's,
and the sample, and so the tokenizer, are the same as when the whole table was sorted.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import defaultdict
from dataclasses import dataclass, field

import pyarrow.compute as pc

from ray_tasks.tables import utf8_lengths
from ray_tasks.tokenize.inputs import Part

SCAN_COLUMNS = ("repo_name", "content", "sha256")


@dataclass
class Scan:
    repo_bytes: dict[str, int] = field(default_factory=dict)
    """UTF-8 bytes of content per repository (the validation split's share is measured in them)."""
    repo_part: dict[str, int] = field(default_factory=dict)
    """The part holding each repository (parts hold whole repositories)."""
    sample: list[tuple[bytes, int, int, int]] = field(default_factory=list)
    """The tokenizer sample in sample order: (key, row number, part, row in part)."""
    identity: str = ""
    """A digest of every file's identity, in order (the trained tokenizer's cache key)."""
    rows: int = 0


def scan(parts: list[Part], seed: int, max_bytes: int | None) -> Scan:
    """One pass over ``parts`` (one part in memory at a time); ``max_bytes`` None: no sample."""
    out = Scan()
    sizes: dict[str, int] = defaultdict(int)
    heap: list[tuple[bytes, int, int, int, int]] = []  # (-key as bytes complement, -row, length, part, row)
    heap_chars = 0
    ident = hashlib.sha256()
    for p, part in enumerate(parts):
        table = part.read(SCAN_COLUMNS)
        repos = table.column("repo_name").to_pylist()
        for repo, n in zip(repos, utf8_lengths(table.column("content")).to_pylist()):
            sizes[repo] += n
        for repo in set(repos):
            if out.repo_part.setdefault(repo, p) != p:
                raise ValueError(f"tokenize: repository {repo!r} is in parts {out.repo_part[repo]} and {p}; "
                                 "each part must hold whole repositories (ray_tasks/datasets.py)")
        shas = table.column("sha256").to_pylist() if "sha256" in table.column_names else None
        if shas is not None:
            for s in shas:
                ident.update(f"{s}\0".encode())
        if max_bytes is not None:
            chars = pc.utf8_length(table.column("content")).to_pylist()
            for i, n in enumerate(chars):
                row = out.rows + i
                key = hashlib.sha256(f"{seed}:{shas[i] if shas is not None else row}".encode()).digest()
                heapq.heappush(heap, (_desc(key), -row, n or 0, p, i))
                heap_chars += n or 0
                # The largest key is not needed while the smaller ones alone reach the bar.
                while heap and heap_chars - heap[0][2] >= max_bytes:
                    heap_chars -= heapq.heappop(heap)[2]
        out.rows += table.num_rows
        del table
    out.repo_bytes = dict(sizes)
    out.sample = sorted((_desc(k), -neg_row, p, i) for k, neg_row, _, p, i in heap)
    out.identity = ident.hexdigest() if out.rows else ""
    return out


def sample_texts(parts: list[Part], found: Scan) -> list[str]:
    """The sampled files' contents in sample order (read from the parts that hold them)."""
    by_part: dict[int, list[int]] = defaultdict(list)
    for _, _, p, i in found.sample:
        by_part[p].append(i)
    texts: dict[tuple[int, int], str] = {}
    for p, rows in sorted(by_part.items()):
        content = parts[p].read(["content"]).column("content")
        for i in rows:
            texts[(p, i)] = content[i].as_py()
    return [texts[(p, i)] for _, _, p, i in found.sample]


def _desc(key: bytes) -> bytes:
    """A key whose order is reversed (heapq is a min-heap; the sample needs the largest key on top)."""
    return bytes(255 - b for b in key)
