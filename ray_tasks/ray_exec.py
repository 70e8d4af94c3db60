"""Running batch functions under Ray Data, and the local Ray bootstrap.

Ray starts locally unless ``address`` names a cluster; the same code then
scales out. Order is preserved so that outputs are byte-identical between runs
(DVC hashes them) and identical to a run without Ray.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Callable, Iterator

import pyarrow as pa

log = logging.getLogger(__name__)


def init_ray(address: str | None, num_cpus: int | None, object_store_memory_mb: int) -> bool:
    """Start or join Ray; returns True when this call started it (so the caller shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    if address:
        # Cluster workers may not have this project installed: ship the step code with the job.
        import ray_tasks

        ray.init(address=address, runtime_env={"py_modules": [ray_tasks]}, **kwargs)
    else:
        ray.init(num_cpus=num_cpus, object_store_memory=object_store_memory_mb * 1024 * 1024, **kwargs)
    return True


@contextlib.contextmanager
def ray_running(address: str | None, num_cpus: int | None, object_store_memory_mb: int) -> Iterator[None]:
    """Ray for the duration of a stage: started (and then shut down) here unless already up."""
    started = init_ray(address, num_cpus, object_store_memory_mb)
    try:
        yield
    finally:
        if started:
            import ray

            ray.shutdown()


def map_batches(
    table: pa.Table, fn: Callable[..., pa.Table], batch_size: int, fn_kwargs: dict[str, Any] | None = None
) -> pa.Table:
    """``fn`` over Arrow batches of ``table`` on Ray Data, results concatenated in input order."""
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    ds = ray.data.from_arrow(table).map_batches(
        fn, batch_format="pyarrow", batch_size=batch_size, fn_kwargs=fn_kwargs or {}, zero_copy_batch=True
    )
    blocks = [ray.get(ref) for ref in ds.to_arrow_refs()]
    blocks = [b for b in blocks if b.num_rows]
    if not blocks:
        return fn(table.slice(0, 0), **(fn_kwargs or {}))
    return pa.concat_tables(blocks, promote_options="default")


def map_local(
    table: pa.Table, fn: Callable[..., pa.Table], batch_size: int, fn_kwargs: dict[str, Any] | None = None
) -> pa.Table:
    """The same contract as ``map_batches`` without Ray (tests, tiny inputs)."""
    outs = [fn(table.slice(i, batch_size), **(fn_kwargs or {})) for i in range(0, max(table.num_rows, 1), batch_size)]
    return pa.concat_tables(outs, promote_options="default")
