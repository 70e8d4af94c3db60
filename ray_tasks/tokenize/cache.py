"""What an interrupted tokenize stage reuses from its work dir: the trained tokenizer and encoded chunks.

Each is stored under a key that digests everything it was made from (params, tokenizer,
file identities), so a changed input is a cache miss, never a stale hit. The cache only
saves time: the stage's outputs are the same with or without it.

A chunk is two files: ``<key>.npy``, its documents' tokens back to back (read back as a
memory map, a document at a time, when the splits are written), and ``<key>.json``, its
repositories, their documents' lengths and its counts; the JSON is written last, each file
under a temporary name then renamed, so a chunk with a JSON is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
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


def save_chunk(folder: Path, key: str, res: dict, dtype: np.dtype) -> dict:
    """Write one chunk (tokens, then its JSON); returns the JSON's content (``load_chunk``'s)."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = {k: v for k, v in res.items() if k != "docs"} | {"lengths": [int(len(d)) for d in res["docs"]]}
    tokens = np.concatenate(res["docs"]).astype(dtype) if res["docs"] else np.zeros(0, dtype)
    _atomic(folder / f"{key}.npy", lambda fh: np.save(fh, tokens))
    _atomic(folder / f"{key}.json", lambda fh: fh.write(json.dumps(meta, sort_keys=True).encode()))
    return json.loads(json.dumps(meta))


def load_chunk(folder: Path, key: str) -> dict | None:
    """A complete chunk's JSON, or None when there is none."""
    meta = folder / f"{key}.json"
    if not meta.is_file() or not (folder / f"{key}.npy").is_file():
        return None
    return json.loads(meta.read_text())


def chunk_tokens(folder: Path, key: str) -> np.ndarray:
    """A chunk's tokens, memory-mapped (documents are sliced out of it one at a time)."""
    return np.load(folder / f"{key}.npy", mmap_mode="r")


def prune_chunks(folder: Path, keep: set[str]) -> None:
    """Remove chunks of other keys (earlier inputs or params) and leftovers of killed writes."""
    if not folder.is_dir():
        return
    for f in folder.iterdir():
        if f.is_file() and f.name.split(".")[0] not in keep:
            f.unlink(missing_ok=True)


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
