"""The tokenize stage's input, part by part: a partitioned dataset (``ray_tasks/datasets.py``), a
single Parquet file (one part), or a table already in memory (one part; tests, notebooks).

The stage reads a part's columns when it needs them, one part at a time, and never the whole
input: every pass over the input (sizes and the tokenizer sample, encoding, the validation
figures) holds one part plus what it keeps per repository or per sampled file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from ray_tasks.datasets import is_dataset, open_part, read_manifest


@dataclass(frozen=True)
class Part:
    """One part: where it lives (or the table itself) and what identifies it."""

    address: str | None
    identity: str
    """The part's sha256 (from the manifest) or, for a table in memory, a digest of its rows' identities."""
    columns: tuple[str, ...]
    table: pa.Table | None = field(default=None, compare=False, repr=False)

    def read(self, columns: Sequence[str] | None = None) -> pa.Table:
        """The part's rows (only ``columns`` that it has, when given)."""
        cols = None if columns is None else [c for c in columns if c in self.columns]
        if self.table is not None:
            return self.table if cols is None else self.table.select(cols)
        return open_part(self.address).read(columns=cols)


def input_parts(src: str | Path | pa.Table) -> list[Part]:
    """The input's parts in order."""
    if isinstance(src, pa.Table):
        return [Part(None, _table_identity(src), tuple(src.column_names), src)]
    if is_dataset(src):
        manifest = read_manifest(src)
        root = str(src).rstrip("/")
        names = tuple(manifest.schema.names)
        return [Part(f"{root}/{p.name}", p.sha256, names) for p in manifest.parts]
    path = Path(src)
    if path.is_dir():
        raise ValueError(f"{src}: not a complete dataset (a folder without a manifest)")
    if not path.is_file():
        raise ValueError(f"{src}: no such dataset or Parquet file")
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return [Part(str(path), h.hexdigest(), tuple(pq.read_schema(path).names))]


def _table_identity(table: pa.Table) -> str:
    h = hashlib.sha256()
    for name in ("repo_name", "path", "sha256", "content"):
        if name in table.column_names:
            for value in table.column(name).to_pylist():
                h.update(f"{value}\0".encode())
            if name == "sha256":
                break
    return h.hexdigest()


def content_bytes(parts: list[Part]) -> int:
    """Content bytes of the input, a part and a column at a time (``length_bytes``, which follows
    the redacted content; the content's own length without it): what the executor choice is made on."""
    import pyarrow.compute as pc

    from ray_tasks.tables import utf8_lengths

    total = 0
    for part in parts:
        if "length_bytes" in part.columns:
            total += int(pc.sum(part.read(["length_bytes"]).column("length_bytes")).as_py() or 0)
        else:
            total += int(pc.sum(utf8_lengths(part.read(["content"]).column("content"))).as_py() or 0)
    return total
