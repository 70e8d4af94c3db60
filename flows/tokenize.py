"""Stage ``tokenize``: BPE tokenizer with StarCoder2's special tokens, repo-context docs, packed shards."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows import tracking
from flows.config import Params
from flows.workspace import FILES, stage_dir
from ray_tasks.prepare import prepare
from ray_tasks.tables import AtomicDir, read_table


@flow(name="stage-tokenize")
def tokenize_flow(params: Params, parent_run_id: str | None = None) -> dict:
    log = get_run_logger()
    with tracking.stage_run("tokenize", params, parent_run_id):
        files = read_table(stage_dir("curate") / FILES)
        with AtomicDir(stage_dir("tokenize")) as out:
            stats = prepare(files, out, **params.tokenize.model_dump())
        tracking.publish_metrics("tokenize", stats)
        log.info("tokenize: %s", stats)
    return stats
