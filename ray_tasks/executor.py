"""Where a stage's parallel work runs: Ray, or this process. One choice for every stage.

    with executor_session(params.ray, n_bytes) as use_ray:     # Ray started here only if needed
        out = map_batches(table, fn, batch_size, kwargs, use_ray=use_ray)

Every parallel step has both paths with identical results (tested per stage): the
signature and bucket tasks of dedup, the filter and PII batches of curate, the
encoding tasks of tokenize, the sandboxed programs of evaluate. ``auto`` uses Ray when
``ray.address`` names a cluster or Ray is already up (a pipeline run that started it),
and otherwise starts a local Ray only for inputs of at least ``auto_min_mb``: on 2 cores
a local Ray takes 7-10 s to start and its own processes take much of the second core
(benchmarks/dedup.py), so below about 1 GB one process finishes first.

Ray is started and stopped here and nowhere else. It starts locally unless ``address``
names a cluster; the same code then scales out. Order is preserved so that outputs are
byte-identical between runs (DVC hashes them) and identical to a run without Ray.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Any, Callable, Iterator, Literal, get_args

import pyarrow as pa
from pydantic import Field

from ray_tasks.params import StageParams

log = logging.getLogger(__name__)


Executor = Literal["auto", "ray", "local"]


class RayParams(StageParams):
    """Where parallel work runs (``params.yaml: ray``); not a stage's section, since results are
    identical either way and a change of executor must not make outputs stale."""

    executor: Executor = "auto"
    """``ray``: always on Ray; ``local``: always in this process; ``auto``: on Ray when ``address``
    names a cluster, when Ray is already up, or when a stage's input is at least ``auto_min_mb``."""
    address: str | None = None
    """Ray cluster to join (None: start a local Ray; "auto": the local cluster)."""
    num_cpus: int | None = Field(default=2, gt=0)
    """CPUs for a local Ray, and parallel workers of the local executor (ignored when joining a cluster)."""
    object_store_memory_mb: int = Field(default=512, gt=0)
    """Object store size for a local Ray."""
    auto_min_mb: float = Field(default=1024, ge=0)
    """``auto`` starts a local Ray only for at least this much input. Measured on 2 cores
    (benchmarks/dedup.py): 813 MB took 24 s in one process and 17 s on Ray plus 7-10 s to
    start Ray, so Ray pays off from about 1 GB there; lower it on machines with more cores."""


def ray_is_up() -> bool:
    """Whether this process has a Ray session; Ray not imported means not up (no need to import it)."""
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def wants_ray(params: RayParams, n_bytes: int = 0, ray_up: bool | None = None) -> bool:
    """Whether work over ``n_bytes`` of input should run on Ray (``params.executor`` decides)."""
    if params.executor != "auto":
        return params.executor == "ray"
    if params.address:
        return True
    if ray_up is None:
        ray_up = ray_is_up()
    return ray_up or n_bytes >= params.auto_min_mb * 2**20


@contextlib.contextmanager
def executor_session(params: RayParams, n_bytes: int = 0, executor: str | None = None) -> Iterator[bool]:
    """Yields whether to use Ray; starts Ray (and shuts it down afterwards) when this work needs it
    and it is not up. ``executor`` overrides ``params.executor`` (a CLI flag)."""
    if executor is not None:
        if executor not in get_args(Executor):
            raise ValueError(f"executor must be {', '.join(get_args(Executor))}, got {executor!r}")
        params = params.model_copy(update={"executor": executor})
    use_ray = wants_ray(params, n_bytes)
    if not use_ray:
        yield False
        return
    with ray_running(params):
        yield True


def local_workers(params: RayParams) -> int:
    """Parallel workers of the local executor (the sandbox's program runners)."""
    return params.num_cpus or os.cpu_count() or 1


def init_ray(params: RayParams) -> bool:
    """Start or join Ray; returns True when this call started it (so the caller shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    if params.address:
        # Cluster workers may not have this project installed: ship the step code with the job.
        import ray_tasks

        ray.init(address=params.address, runtime_env={"py_modules": [ray_tasks]}, **kwargs)
    else:
        ray.init(num_cpus=params.num_cpus, object_store_memory=params.object_store_memory_mb * 1024 * 1024, **kwargs)
    log.info("Ray started (%s)", params.address or f"local, {params.num_cpus} CPUs")
    return True


@contextlib.contextmanager
def ray_running(params: RayParams) -> Iterator[None]:
    """Ray for the duration of a block: started (and then shut down) here unless already up."""
    started = init_ray(params)
    try:
        yield
    finally:
        if started:
            import ray

            ray.shutdown()


def map_batches(
    table: pa.Table, fn: Callable[..., pa.Table], batch_size: int, fn_kwargs: dict[str, Any] | None = None,
    use_ray: bool = True,
) -> pa.Table:
    """``fn`` over Arrow batches of ``table``, results concatenated in input order: on Ray Data, or
    batch by batch in this process (the same batches, so the same output)."""
    fn_kwargs = fn_kwargs or {}
    if not use_ray:
        outs = [fn(table.slice(i, batch_size), **fn_kwargs) for i in range(0, max(table.num_rows, 1), batch_size)]
        return pa.concat_tables(outs, promote_options="default")
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    ds = ray.data.from_arrow(table).map_batches(
        fn, batch_format="pyarrow", batch_size=batch_size, fn_kwargs=fn_kwargs, zero_copy_batch=True
    )
    blocks = [ray.get(ref) for ref in ds.to_arrow_refs()]
    blocks = [b for b in blocks if b.num_rows]
    if not blocks:
        return fn(table.slice(0, 0), **fn_kwargs)
    return pa.concat_tables(blocks, promote_options="default")
