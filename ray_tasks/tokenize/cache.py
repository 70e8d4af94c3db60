"""What an interrupted tokenize stage reuses from its work dir: the trained tokenizer and encoded chunks.

Each is stored under a key that digests everything it was made from (params, tokenizer,
file identities), so a changed input is a cache miss, never a stale hit. The cache only
saves time: the stage's outputs are the same with or without it.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa


def cache_key(items: list) -> str:
    """A digest of JSON-able inputs (anything else by its ``str``)."""
    return hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()


def chunk_identity(table: pa.Table) -> list[str]:
    """What identifies a chunk's files: repository/path/sha256, or the content's hash without sha256."""
    if "sha256" in table.column_names:
        return [f"{r}/{p}/{s}" for r, p, s in zip(table.column("repo_name").to_pylist(), table.column("path").to_pylist(),
                                                    table.column("sha256").to_pylist())]
    return [hashlib.sha256(c.encode()).hexdigest() for c in table.column("content").to_pylist()]


def save_chunk(path: Path, res: dict) -> None:
    """One chunk's documents and counts in one ``.npz``, written atomically (temp name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {k: v for k, v in res.items() if k != "docs"}
    buf = io.BytesIO()
    np.savez(buf, lengths=np.array([len(d) for d in res["docs"]], dtype=np.int64),
             tokens=np.concatenate(res["docs"]) if res["docs"] else np.zeros(0, np.int64),
             meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)


def load_chunk(path: Path) -> dict | None:
    """A chunk saved by ``save_chunk``, or None when there is none."""
    if not path.exists():
        return None
    with np.load(path) as z:
        meta = json.loads(z["meta"].tobytes().decode())
        bounds = np.cumsum(z["lengths"])[:-1]
        meta["docs"] = list(np.split(z["tokens"], bounds)) if len(z["lengths"]) else []
    return meta
