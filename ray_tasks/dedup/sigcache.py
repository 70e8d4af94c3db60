"""MinHash signatures kept across runs, keyed by content hash: a re-run signs only new contents (issue 16).

The stage's output (the LSH index included) is rebuilt from scratch on every run, but a file's
signature depends only on its content and the signature parameters, so it is kept here, in a work
folder outside the output (``.starflow/work/dedup/signatures/<digest>/``, ``<digest>`` of
``DedupParams.signature_config()``, this package's ``minhash.py`` and the rensa, Arrow, NumPy and
Numba versions: any change that could change a signature starts an empty folder).

Layout: immutable segments, each two files named by the sha256 of their bytes::

    <name>.sig.npy     (n x num_perm) uint32 signatures, in key order
    <name>.keys.npy    (n,) 32-byte keys (the content's sha256 digest), sorted, distinct

A segment is written under temporary names, its signatures renamed first and its keys last (the
keys file is what makes a segment visible), and its name is its content's digest: two runs writing
the same signatures write the same files, a killed run leaves at most a temporary file. The driver
checks every segment's digest when it opens the cache, and drops (and says so) one that does not
match: a truncated or damaged file costs a recomputation, never a wrong signature.

Who does what: the driver holds only keys (``lookup``: which rows are cached, where); the map tasks
(``lsh.sign_task``) copy hits out of the memory-mapped segments, compute the misses, and write them
as one new segment per task (``write_segment``). A task on a node that does not see the folder
finds no segment and computes everything; its write fails and is only logged. After a completed run
``finish`` compacts the cache when more than half its entries were not used by the run (so the cache
stays about the size of what the last run needed) or when it holds over ``MAX_SEGMENTS`` segments,
and writes ``last_run.json`` (the counts).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ray_tasks.dedup import minhash
from ray_tasks.dedup.params import DedupParams
from ray_tasks.tables import write_json_atomic

KEY = np.dtype("S32")
"""A content's key: its 32-byte sha256 digest."""
LAST_RUN = "last_run.json"
MAX_SEGMENTS = 256
"""More segments than this are compacted into one after a run: each run adds about one per map
task (61 at 1.2 GB), and a map task opens every segment its rows' signatures are in."""
_SIG, _KEYS = ".sig.npy", ".keys.npy"
_log = logging.getLogger(__name__)


def cache_folder(work: str | Path, params: DedupParams) -> Path:
    """The folder of the signatures that ``params`` and this code compute (absolute: tasks may run elsewhere)."""
    ident = {"config": params.signature_config(), "rensa": metadata.version("rensa"), "pyarrow": pa.__version__,
             "numpy": np.__version__, "numba": metadata.version("numba"),
             "minhash": hashlib.sha256(Path(minhash.__file__).read_bytes()).hexdigest()}
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    return Path(work).absolute() / "signatures" / digest


def content_keys(hashes: pa.Array) -> np.ndarray:
    """The 32-byte keys of content hashes: the sha256 digest itself when the hash is one (64 hex
    digits, what ingest writes), else the sha256 of the hash's text (an input with other hashes)."""
    hashes = hashes.cast(pa.string())
    if len(hashes) == 0:
        return np.zeros(0, KEY)
    if hashes.null_count == 0 and pc.all(pc.match_substring_regex(hashes, "^[0-9a-fA-F]{64}$")).as_py():
        return np.frombuffer(bytes.fromhex("".join(hashes.to_pylist())), KEY)
    return np.array([hashlib.sha256((h or "").encode()).digest() for h in hashes.to_pylist()], KEY)


def _digest(keys: np.ndarray, sig: np.ndarray) -> str:
    h = hashlib.sha256(np.ascontiguousarray(keys).view(np.uint8))
    h.update(np.ascontiguousarray(sig).view(np.uint8))
    h.update(str(sig.shape).encode())
    return h.hexdigest()[:32]


def write_segment(folder: str | Path, keys: np.ndarray, sig: np.ndarray) -> str | None:
    """Write signatures ``sig`` of contents ``keys`` as a new segment; its name, or None when the
    folder cannot be written (a node without the shared folder: the signatures are only not kept)."""
    if len(keys) == 0:
        return None
    keys, first = np.unique(keys, return_index=True)
    sig = np.ascontiguousarray(sig[first], np.uint32)
    name = _digest(keys, sig)
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for suffix, arr in ((_SIG, sig), (_KEYS, keys)):  # keys last: they make the segment visible
            tmp = folder / f".{name}{suffix}.{uuid.uuid4().hex}.tmp"
            with open(tmp, "wb") as fh:
                np.save(fh, arr)
            os.replace(tmp, folder / f"{name}{suffix}")
    except OSError as exc:
        _log.warning("dedup: signature cache %s not written (%s); the signatures are recomputed next time", folder, exc)
        return None
    return name


@dataclass(frozen=True)
class CacheView:
    """What a map task needs to read hits and write misses: picklable, absolute paths only."""

    folder: str
    segments: tuple[str, ...]

    def fill(self, out: np.ndarray, keys: np.ndarray, seg: np.ndarray, row: np.ndarray) -> np.ndarray:
        """Copy the cached signatures (segment ``seg``, row ``row``; -1: a miss) into ``out``; which
        rows were filled. A segment this node cannot read, or a row whose key differs, is left to compute."""
        hit = np.zeros(len(keys), bool)
        for s in np.unique(seg[seg >= 0]).tolist():
            sel = np.flatnonzero(seg == s)
            try:
                seg_keys, seg_sig = _open(Path(self.folder), self.segments[s])
            except (OSError, ValueError):
                continue
            r = row[sel]
            ok = (r < len(seg_keys)) & (seg_sig.shape[1] == out.shape[1])
            ok[ok] = seg_keys[r[ok]] == keys[sel[ok]]
            out[sel[ok]] = seg_sig[r[ok]]
            hit[sel[ok]] = True
        return hit


def _open(folder: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A segment's (keys, signatures), memory-mapped; ValueError when its files do not fit together."""
    keys = np.load(folder / f"{name}{_KEYS}", mmap_mode="r")
    sig = np.load(folder / f"{name}{_SIG}", mmap_mode="r")
    if keys.dtype != KEY or keys.ndim != 1 or sig.dtype != np.uint32 or sig.ndim != 2 or len(sig) != len(keys):
        raise ValueError(f"keys {keys.dtype}{keys.shape} and signatures {sig.dtype}{sig.shape} do not match")
    return keys, sig


@dataclass
class CachePlan:
    """Per row to sign: its key and where the cache holds its signature (``seg`` -1: a miss)."""

    view: CacheView
    keys: np.ndarray
    seg: np.ndarray
    row: np.ndarray


@dataclass
class SignatureCache:
    """The driver's side: the verified segments' keys (memory-mapped), lookups, then ``finish``."""

    work: Path
    folder: Path
    num_perm: int
    log: logging.Logger | logging.LoggerAdapter
    names: list[str] = field(default_factory=list)
    keys: list[np.ndarray] = field(default_factory=list)
    damaged: int = 0
    opened_at: float = field(default_factory=time.time)
    """Files newer than this that ``finish`` does not know are a concurrent run's: left alone."""

    @classmethod
    def open(cls, work: str | Path, params: DedupParams,
             log: logging.Logger | logging.LoggerAdapter | None = None) -> "SignatureCache":
        """The cache under ``work`` for ``params``; segments whose bytes do not match their name are removed."""
        cache = cls(Path(work).absolute(), cache_folder(work, params), params.num_perm, log or _log)
        cache.folder.mkdir(parents=True, exist_ok=True)
        for name in _segment_names(cache.folder):
            try:
                keys, sig = _open(cache.folder, name)
                if sig.shape[1] != params.num_perm or _digest(keys, sig) != name:
                    raise ValueError("its content does not match its name")
            except (OSError, ValueError) as exc:
                cache.log.warning("dedup: signature cache segment %s is damaged (%s): ignored and removed, "
                                  "its signatures are computed again", cache.folder / name, exc)
                _remove(cache.folder, name)
                cache.damaged += 1
                continue
            cache.names.append(name)
            cache.keys.append(keys)
        return cache

    def plan(self, keys: np.ndarray) -> CachePlan:
        """Where each key's signature is cached (the first segment that has it), -1 for a miss.

        One stable sort of every segment's keys, then one search: per segment it was a search of
        all the keys each, 1.5 s at 125 segments (a cache grows by about one segment per map task
        and run)."""
        seg = np.full(len(keys), -1, np.int32)
        row = np.zeros(len(keys), np.int64)
        cached = np.concatenate(self.keys) if self.keys else np.zeros(0, KEY)
        if len(cached) and len(keys):
            seg_of = np.repeat(np.arange(len(self.keys), dtype=np.int32), [len(k) for k in self.keys])
            row_of = np.concatenate([np.arange(len(k), dtype=np.int64) for k in self.keys])
            order = np.argsort(cached, kind="stable")  # equal keys stay in segment order
            pos = np.minimum(np.searchsorted(cached[order], keys), len(cached) - 1)  # the first equal one
            found = cached[order[pos]] == keys
            seg[found], row[found] = seg_of[order[pos[found]]], row_of[order[pos[found]]]
        return CachePlan(CacheView(str(self.folder), tuple(self.names)), keys, seg, row)

    def finish(self, plan: CachePlan, counts: dict) -> dict:
        """After a completed run: compact when more than half the cached entries were not used by it
        or there are over ``MAX_SEGMENTS`` segments, drop other parameters' folders and leftovers,
        write ``last_run.json``; its content."""
        names = _segment_names(self.folder)
        segs = {}
        for name in names:
            try:
                segs[name] = _open(self.folder, name)
            except (OSError, ValueError):
                _remove(self.folder, name)
        entries = sum(len(k) for k, _ in segs.values())
        # One intersection of sorted arrays (np.isin per segment took 4.6 s at 125 segments).
        live = np.intersect1d(np.concatenate([k for k, _ in segs.values()]), plan.keys) if segs else plan.keys[:0]
        compacted = entries - len(live) > entries / 2 or len(segs) > MAX_SEGMENTS
        if compacted:
            kept = self._compact(live, segs)
            for name in segs:
                if name != kept:
                    _remove(self.folder, name)
            segs = {kept: _open(self.folder, kept)} if kept else {}
        self._drop_leftovers(set(segs))
        report = {**counts, "signatures_needed": int(len(plan.keys)), "cache_folder": str(self.folder),
                  "cache_entries": int(sum(len(k) for k, _ in segs.values())), "cache_segments": len(segs),
                  "compacted": bool(compacted), "damaged_segments_removed": self.damaged}
        write_json_atomic(report, self.work / LAST_RUN)
        self.log.info("dedup: signatures: %d computed, %d from the cache (%s: %d entries in %d segments%s)",
                      report["signatures_computed"], report["signatures_from_cache"], self.folder,
                      report["cache_entries"], report["cache_segments"], ", compacted" if compacted else "")
        return report

    def _compact(self, live: np.ndarray, segs: dict) -> str | None:
        """One segment holding the ``live`` keys' signatures, gathered segment by segment through a
        memory-mapped temporary file (the driver never holds the signatures)."""
        if len(live) == 0:
            return None
        tmp = self.folder / f".compact.{uuid.uuid4().hex}.tmp"
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint32, shape=(len(live), self.num_perm))
        done = np.zeros(len(live), bool)
        for seg_keys, seg_sig in segs.values():
            pos = np.minimum(np.searchsorted(seg_keys, live), len(seg_keys) - 1)
            take = np.flatnonzero(~done & (seg_keys[pos] == live))
            out[take] = seg_sig[pos[take]]
            done[take] = True
        out.flush()
        name = write_segment(self.folder, live, out)
        del out
        tmp.unlink(missing_ok=True)
        return name

    def _drop_leftovers(self, keep: set[str]) -> None:
        """Temporary files, signatures without keys, and the folders of other parameters or code.
        A file written since this run opened the cache may be a concurrent run's segment being
        written (temporary name, or signatures before keys): it is left for the next run."""
        for path in self.folder.iterdir():
            name = path.name.split(".")[0]
            if (path.name.startswith(".") or name not in keep) and _older_than(path, self.opened_at):
                path.unlink(missing_ok=True)
        for other in self.folder.parent.iterdir():
            if other != self.folder and other.is_dir():
                shutil.rmtree(other, ignore_errors=True)


def _older_than(path: Path, when: float) -> bool:
    try:
        return path.stat().st_mtime < when
    except OSError:  # removed meanwhile
        return False


def _segment_names(folder: Path) -> list[str]:
    return sorted(p.name[: -len(_KEYS)] for p in folder.glob(f"*{_KEYS}") if not p.name.startswith("."))


def _remove(folder: Path, name: str) -> None:
    for suffix in (_KEYS, _SIG):
        (folder / f"{name}{suffix}").unlink(missing_ok=True)
