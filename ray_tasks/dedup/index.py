"""The persisted near-dedup index of a dataset: what a new batch is deduplicated against.

Layout (``DIR`` is the index folder)::

    meta.json            config, partitions, segments (written last: it commits an update)
    state-K.parquet      one row per document: component label, kept, repo removed (K = segments)
    repos-K.parquet      one row per repository: tree hash, priority, removed
    seg-00000/           one immutable segment per run (the first full run, then each batch)
      docs.parquet       id, repo_name, path, content hash, priority columns
      sig-00000.npy      MinHash signatures of one map batch (only one document per content hash)
      sigid-00000.npy    their document ids (ascending)
      keys-00.npy        band keys of LSH partition 0, sorted; ids-00.npy the matching ids

Why segments: a batch adds one segment and never rewrites the old ones, so the cost of an
update follows the new data; looking up a new band key is a binary search in each
segment's sorted key file (memory-mapped). Only the state (a few bytes per document) and
the repository table are rewritten, under new names, so an interrupted update leaves the
index as meta.json last described it.

``meta.json: config`` holds the values that decide signatures and bands
(``DedupParams.signature_config()``, ``ray_tasks/dedup/params.py``); a batch hashed with other
values is refused. ``num_partitions`` is stored beside it: an index keeps the partitioning it
was built with, whatever ``params.yaml`` says later.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ray_tasks.dedup.params import DedupParams
from ray_tasks.tables import write_json_atomic, write_parquet_atomic

FORMAT = "starflow-lsh-index/1"


@dataclass
class Segment:
    name: str
    first_id: int
    n_docs: int


@dataclass
class IndexMeta:
    config: dict
    num_partitions: int
    segments: list[Segment] = field(default_factory=list)
    format: str = FORMAT

    @property
    def n_docs(self) -> int:
        return sum(s.n_docs for s in self.segments)


def load_meta(root: Path, params: DedupParams) -> IndexMeta:
    """The index's metadata, or an empty index; refuses an index built with other parameters."""
    path = Path(root) / "meta.json"
    config = params.signature_config()
    if not path.exists():
        return IndexMeta(config=config, num_partitions=params.num_partitions)
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable LSH index metadata ({exc})") from exc
    if raw.get("format") != FORMAT:
        raise ValueError(f"{path}: not a StarFlow LSH index (format {raw.get('format')!r})")
    if raw["config"] != config:
        raise ValueError(f"{path}: index built with {raw['config']}, current dedup parameters are {config}")
    segs = [Segment(**s) for s in raw["segments"]]
    return IndexMeta(config=raw["config"], num_partitions=raw["num_partitions"], segments=segs)


def save_meta(root: Path, meta: IndexMeta) -> None:
    write_json_atomic(asdict(meta), Path(root) / "meta.json")


def segment_name(meta: IndexMeta) -> str:
    return f"seg-{len(meta.segments):05d}"


# --------------------------------------------------------------------------- per-document state
STATE_SCHEMA = pa.schema([("label", pa.int64()), ("kept", pa.bool_()), ("repo_removed", pa.bool_())])


def read_state(root: Path, meta: IndexMeta) -> dict[str, np.ndarray]:
    if not meta.segments:
        return {"label": np.zeros(0, np.int64), "kept": np.zeros(0, bool), "repo_removed": np.zeros(0, bool)}
    t = pq.read_table(Path(root) / f"state-{len(meta.segments):05d}.parquet")
    if t.num_rows != meta.n_docs:
        raise ValueError(f"{root}: state has {t.num_rows} rows, meta.json says {meta.n_docs}")
    return {c: t.column(c).to_numpy() for c in STATE_SCHEMA.names}


def write_state(root: Path, state: dict[str, np.ndarray], n_segments: int) -> None:
    table = pa.table({c: state[c] for c in STATE_SCHEMA.names}, schema=STATE_SCHEMA)
    write_parquet_atomic(table, Path(root) / f"state-{n_segments:05d}.parquet")


def read_docs(root: Path, meta: IndexMeta, columns: list[str] | None = None) -> pa.Table:
    tables = [pq.read_table(Path(root) / s.name / "docs.parquet", columns=columns) for s in meta.segments]
    return pa.concat_tables(tables) if tables else None


def read_repos(root: Path, meta: IndexMeta) -> pa.Table | None:
    path = Path(root) / f"repos-{len(meta.segments):05d}.parquet"
    return pq.read_table(path) if meta.segments else None


def write_docs(seg_dir: Path, docs: pa.Table) -> None:
    write_parquet_atomic(docs, Path(seg_dir) / "docs.parquet")


def write_repos(root: Path, repos: pa.Table, n_segments: int) -> None:
    write_parquet_atomic(repos, Path(root) / f"repos-{n_segments:05d}.parquet")


def drop_stale(root: Path, meta: IndexMeta) -> None:
    """Remove state and repository tables of earlier versions (after meta.json moved on)."""
    current = {f"state-{len(meta.segments):05d}.parquet", f"repos-{len(meta.segments):05d}.parquet"}
    for f in list(Path(root).glob("state-*.parquet")) + list(Path(root).glob("repos-*.parquet")):
        if f.name not in current:
            f.unlink(missing_ok=True)


# --------------------------------------------------------------------------- signatures and keys
def write_signature_batch(seg_dir: str, batch_no: int, ids: np.ndarray, sig: np.ndarray) -> None:
    seg = Path(seg_dir)
    seg.mkdir(parents=True, exist_ok=True)
    np.save(seg / f"sigid-{batch_no:05d}.npy", ids.astype(np.int64))
    np.save(seg / f"sig-{batch_no:05d}.npy", sig)


def write_partition(seg_dir: str, part: int, keys: np.ndarray, ids: np.ndarray) -> None:
    seg = Path(seg_dir)
    seg.mkdir(parents=True, exist_ok=True)
    np.save(seg / f"keys-{part:02d}.npy", keys)
    np.save(seg / f"ids-{part:02d}.npy", ids)


class SignatureStore:
    """Signatures by document id over any number of segment folders (memory-mapped)."""

    def __init__(self, seg_dirs: list[str]):
        self.files: list[tuple[np.ndarray, np.ndarray]] = []
        for seg in seg_dirs:
            for idf in sorted(Path(seg).glob("sigid-*.npy")):
                sig = np.load(idf.with_name(idf.name.replace("sigid-", "sig-")), mmap_mode="r")
                self.files.append((np.load(idf), sig))
        self.first = np.array([f[0][0] if len(f[0]) else np.iinfo(np.int64).max for f in self.files], np.int64)
        order = np.argsort(self.first, kind="stable")
        self.files = [self.files[i] for i in order]
        self.first = self.first[order]

    def get(self, ids: np.ndarray, num_perm: int) -> np.ndarray:
        out = np.empty((len(ids), num_perm), np.uint32)
        which = np.searchsorted(self.first, ids, side="right") - 1
        for f in np.unique(which):
            sel = np.flatnonzero(which == f)
            fid, sig = self.files[f]
            rows = np.searchsorted(fid, ids[sel])
            if np.any(rows >= len(fid)) or np.any(fid[np.minimum(rows, len(fid) - 1)] != ids[sel]):
                raise KeyError("signature missing for some document ids (corrupt index?)")
            out[sel] = sig[rows]
        return out


def lookup_keys(seg_dirs: list[str], part: int, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions in ``keys``, old ids) for every old document sharing a band key, per segment."""
    pos_out, ids_out = [], []
    for seg in seg_dirs:
        kf = Path(seg) / f"keys-{part:02d}.npy"
        if not kf.exists():
            continue
        old_keys = np.load(kf, mmap_mode="r")
        old_ids = np.load(Path(seg) / f"ids-{part:02d}.npy", mmap_mode="r")
        lo = np.searchsorted(old_keys, keys, side="left")
        hi = np.searchsorted(old_keys, keys, side="right")
        n = hi - lo
        hit = np.flatnonzero(n)
        if hit.size == 0:
            continue
        reps = n[hit]
        pos = np.repeat(hit, reps)
        starts = np.repeat(lo[hit], reps)
        within = np.arange(len(pos)) - np.repeat(np.cumsum(reps) - reps, reps)
        pos_out.append(pos)
        ids_out.append(np.asarray(old_ids[starts + within]))
    if not pos_out:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(pos_out), np.concatenate(ids_out)


def ensure_clean(path: Path) -> None:
    """Remove a half-written segment left by an interrupted update (meta.json never listed it)."""
    import shutil

    if path.exists():
        shutil.rmtree(path)
    os.makedirs(path.parent, exist_ok=True)
