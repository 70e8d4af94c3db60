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
names a cluster; the same code then scales out: a job on a cluster carries ``ray_tasks``, the
S3 endpoint settings and the driver's working directory, which its workers enter where the
node has it (``cluster_runtime_env``; the shared storage this assumes: infra/README.md). Order is preserved so that outputs are
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
        ray.init(address=params.address, runtime_env=cluster_runtime_env(), **kwargs)
    else:
        ray.init(num_cpus=params.num_cpus, object_store_memory=params.object_store_memory_mb * 1024 * 1024, **kwargs)
    log.info("Ray started (%s)", params.address or f"local, {params.num_cpus} CPUs")
    return True


SHIPPED_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION")
"""Variables copied from the driver to a cluster's workers: where ``s3://`` datasets live
(``ray_tasks/datasets.py``), so that a worker reads and writes the same store the driver named.
Credentials are not shipped (they would sit in the cluster's GCS): nodes get their own, from an
instance role, a mounted secret or their environment."""


WORKSPACE_ENV = "STARFLOW_DRIVER_CWD"
"""Set in a cluster job's workers: the driver's working directory (``enter_workspace``)."""


def cluster_runtime_env(cwd: str | None = None) -> dict[str, Any]:
    """The job's runtime environment on a cluster: the step code (``ray_tasks``, which workers may
    not have installed; its dependencies must be in the nodes' image), ``SHIPPED_ENV``, and the
    driver's working directory as the workers' one where that path exists on the node: a workspace
    on a shared filesystem mounted at the same path everywhere (infra/README.md) then resolves
    relative paths (``data/...``) the same in a task as in the driver, instead of in whatever
    folder the node's ``ray start`` ran in."""
    import ray_tasks

    env_vars = {k: os.environ[k] for k in SHIPPED_ENV if os.environ.get(k)}
    env_vars[WORKSPACE_ENV] = cwd or os.getcwd()
    return {"py_modules": [ray_tasks], "env_vars": env_vars,
            "worker_process_setup_hook": f"{__name__}.{enter_workspace.__name__}"}


def enter_workspace() -> None:
    """Run in each cluster worker before its first task (``worker_process_setup_hook``): into the
    driver's working directory when this node has it."""
    path = os.environ.get(WORKSPACE_ENV)
    if not path:
        return
    if os.path.isdir(path):
        os.chdir(path)
    else:  # a node without the shared workspace: absolute and s3:// paths still work
        log.warning("%s is not on this node: relative paths resolve in %s", path, os.getcwd())


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
