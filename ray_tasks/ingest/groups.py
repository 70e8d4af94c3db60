"""Units of ingest's parallel work: repositories grouped by bytes, mapped in order with a bound.

A group is whole repositories (a repository's licenses apply to all its files, so it is
never split) of about ``ingest.batch_bytes`` together. Groups run as Ray tasks when the
executor chose Ray (``ray_tasks.executor.executor_session``), else one after the other in
this process, as ``executor.map_batches`` does; results come back in group order either way,
so the outputs are the same and written as they arrive.

Why not ``executor.map_batches``: it maps over an Arrow table already in memory, and
ingest's input is files on disk that must not be in memory all at once; a Ray Data
pipeline over Python objects would add a block layer without bounding anything better
than ``max_in_flight`` does here.

A repository's identity (``repo_key``) is what a resumed or repeated run compares to reuse its
finished rows (``stage.GroupStore``): the repository as listed (name, paths, where the bytes are,
metadata), the size and modification time of every file it will read, the settings that change
its rows, and the code and library versions that compute them. A group's identity
(``group_key``) is its members' keys in order and the settings that change its part's bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections import deque
from functools import lru_cache
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def group_by_bytes(items: Sequence[T], sizes: Sequence[int], batch_bytes: int,
                   names: Sequence[str] | None = None) -> list[list[T]]:
    """Consecutive runs of ``items`` of at most ``batch_bytes`` together (an item larger than that
    is a run alone), in order.

    With ``names`` (the stage passes repository names), a run also ends after item i with
    probability ``sizes[i] / batch_bytes``, decided by a hash of ``names[i]``: content-defined
    chunking, as rsync and restic cut files. Cutting only where the bytes run out, one repository
    inserted early would shift every later boundary, and every later group (and its finished
    output) would be new; with cuts the items choose, about ``batch_bytes`` apart, an insertion or
    change moves the boundaries only up to the next such cut, and the groups after it keep their
    members and keys. The byte cap still holds: it bounds a task's memory."""
    groups: list[list[T]] = []
    current: list[T] = []
    current_bytes = 0
    for k, (item, size) in enumerate(zip(items, sizes)):
        if current and current_bytes + size > batch_bytes:
            groups.append(current)
            current, current_bytes = [], 0
        current.append(item)
        current_bytes += size
        if names is not None and _unit(names[k]) < size / batch_bytes:
            groups.append(current)
            current, current_bytes = [], 0
    if current:
        groups.append(current)
    return groups


def _unit(name: str) -> float:
    """A number in [0, 1) fixed by ``name`` (the same in every run and process)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2.0**64


def map_ordered(fn: Callable[..., R], items: Iterable[T], fn_kwargs: dict[str, Any] | None = None,
                use_ray: bool = False, max_in_flight: int | None = None) -> Iterator[R]:
    """``fn(item, **fn_kwargs)`` for each item, yielded in input order.

    On Ray at most ``max_in_flight`` tasks (required there) are submitted and not yet consumed:
    the oldest is awaited before the next is submitted, so a slow group delays writing but never
    lets results pile up in the object store. Without Ray, lazily in this process."""
    fn_kwargs = fn_kwargs or {}
    if not use_ray:
        for item in items:
            yield fn(item, **fn_kwargs)
        return
    if not max_in_flight:
        raise ValueError("map_ordered on Ray needs max_in_flight (ingest.max_in_flight)")
    import ray

    remote = ray.remote(num_cpus=1, max_retries=2)(fn)
    kwargs_ref = {k: ray.put(v) for k, v in fn_kwargs.items()}
    pending: deque = deque()
    for item in items:
        if len(pending) >= max_in_flight:
            yield ray.get(pending.popleft())
        pending.append(remote.remote(item, **kwargs_ref))
    while pending:
        yield ray.get(pending.popleft())


# ---------------------------------------------------------------- identity of a group

CODE_PACKAGES = ("pyarrow", "charset-normalizer", "scancode-toolkit", "scancode-toolkit-mini")
"""Libraries whose version changes a group's output bytes (Parquet writer, decoding, licenses)."""


@lru_cache(maxsize=1)
def code_version() -> str:
    """sha256 of the code that computes a repository's rows and a group's part (this package with
    its data files, the table and dataset writers) and of the library versions it depends on: a
    changed rule invalidates every finished repository, as DVC invalidates the stage."""
    here = Path(__file__).resolve().parent
    files = sorted(p for p in here.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    files += [here.parent / "tables.py", here.parent / "datasets.py"]
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(here.parent).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    for name in CODE_PACKAGES:
        try:
            h.update(f"{name}={importlib_metadata.version(name)}\n".encode())
        except importlib_metadata.PackageNotFoundError:
            h.update(f"{name}=-\n".encode())
    return h.hexdigest()


def repo_key(repo: Any, settings: dict[str, Any]) -> str:
    """A digest naming one repository's rows (files, rejected, repos): equal keys, equal rows.

    ``settings``: the stage settings that change its rows (the caller's choice, e.g. the size cap
    and whether it is opted out). The repository contributes its listing (every dataclass field,
    recursively) and a ``(size, mtime_ns)`` stat of every file it will read: a file edited in
    place changes the key even when the listing does not."""
    h = hashlib.sha256()
    h.update(code_version().encode())
    h.update(_canonical(settings).encode())
    h.update(_canonical(repo).encode())
    h.update(_canonical(_file_stats(repo)).encode())
    return h.hexdigest()[:32]


def group_key(repo_keys: Sequence[str], settings: dict[str, Any]) -> str:
    """A digest naming one group's part: its members' ``repo_key``s in order and the settings
    that change the part's bytes but no repository's rows (the row-group size)."""
    h = hashlib.sha256()
    h.update(code_version().encode())
    h.update(_canonical({"settings": settings, "repositories": list(repo_keys)}).encode())
    return h.hexdigest()[:32]


def _file_stats(repo: Any) -> list:
    """Size and modification time of what the repository will read (files under its root, license
    files named by path, the Parquet files its rows live in)."""
    stats: list = []
    root = getattr(repo, "root", None)
    if root is not None:
        stats += [_stat(Path(root) / rel) for rel in getattr(repo, "files", ())]
    for path in (getattr(repo, "license_files", None) or {}).values():
        stats.append(_stat(Path(path)))
    row_groups = getattr(repo, "row_groups", None)
    for f in sorted({str(f) for f, _ in getattr(row_groups, "parts", ())}):
        stats.append([f, *_stat_any(f)])
    return stats


def _stat(path: Path) -> list:
    try:
        st = os.stat(path)
    except OSError:
        return [None, None]
    return [st.st_size, st.st_mtime_ns]


def _stat_any(path: str) -> list:
    """Local paths by ``os.stat``; URIs (``s3://``) by the filesystem's file info."""
    if "://" not in path:
        return _stat(Path(path))
    from ray_tasks.datasets import resolve

    fs, inner = resolve(path)
    info = fs.get_file_info(inner)
    return [info.size, info.mtime_ns]


def _canonical(value: Any) -> str:
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"))


def _plain(value: Any) -> Any:
    """JSON-able form of a listing: dataclasses by field, models by their dump, bytes by digest;
    any other object by its type name only (its repr may hold a memory address, which would make
    every key new)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"sha256": hashlib.sha256(value).hexdigest()}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_plain(v) for v in value]
        return sorted(items, key=json.dumps) if isinstance(value, (set, frozenset)) else items
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__type__": type(value).__name__,
                **{f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if hasattr(value, "model_dump"):
        return {"__type__": type(value).__name__, **_plain(value.model_dump())}
    return {"__type__": f"{type(value).__module__}.{type(value).__qualname__}"}
