"""Stage ``tokenize``: tokenizer, repository documents with FIM, packed shards for both stage lengths."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows import tracking
from flows.config import Params
from flows.workspace import FILES, WORK, stage_dir
from ray_tasks.tokenize.stage import PrepareConfig, prepare
from ray_tasks.executor import ray_running
from ray_tasks.tables import AtomicDir, read_table


@flow(name="stage-tokenize")
def tokenize_flow(params: Params, parent_run_id: str | None = None) -> dict:
    log = get_run_logger()
    with tracking.stage_run("tokenize", params, parent_run_id):
        files = read_table(stage_dir("curate") / FILES)
        with ray_running(params.ray.address, params.ray.num_cpus, params.ray.object_store_memory_mb):
            with AtomicDir(stage_dir("tokenize")) as out:
                stats = prepare(files, out, PrepareConfig(**params.tokenize.model_dump()), WORK / "tokenize", use_ray=True)
        tracking.publish_metrics("tokenize", stats)
        log.info("tokenize: %s", stats)
    return stats
