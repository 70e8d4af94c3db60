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
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def group_by_bytes(items: Sequence[T], sizes: Sequence[int], batch_bytes: int) -> list[list[T]]:
    """Consecutive runs of ``items`` of at most ``batch_bytes`` together (an item larger than that
    is a run alone), in order."""
    groups: list[list[T]] = []
    current: list[T] = []
    current_bytes = 0
    for item, size in zip(items, sizes):
        if current and current_bytes + size > batch_bytes:
            groups.append(current)
            current, current_bytes = [], 0
        current.append(item)
        current_bytes += size
    if current:
        groups.append(current)
    return groups


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
