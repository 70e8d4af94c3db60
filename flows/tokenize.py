"""Stage ``tokenize``: tokenizer, repository documents with FIM, packed shards for both stage lengths.

The stage's contract is ``ray_tasks/tokenize/__init__.py``; it streams the curated dataset part
by part (``ray_tasks.tokenize.stage.prepare``), with encoded chunks kept in ``.starflow/tokenize``
for a resumed run, and its tokenizer trained once and kept in ``data/tokenizer`` as the data
grows (``ray_tasks/tokenize/kept.py``). Ray is used only when ``params.ray`` asks for it (``ray_tasks/executor.py``),
with the same output either way.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows import tracking
from flows.config import Params
from flows.workspace import DATA, FILES, WORK, stage_dir
from ray_tasks.executor import executor_session
from ray_tasks.tables import AtomicDir
from ray_tasks.tokenize.inputs import content_bytes, input_parts
from ray_tasks.tokenize.stage import prepare

KEPT_TOKENIZER = "tokenizer"
"""``data/tokenizer``: the tokenizer trained once and kept as the data grows (``ray_tasks/tokenize/kept.py``;
a DVC ``persist`` output of this stage), so that a model can continue on new data."""


@flow(name="stage-tokenize")
def tokenize_flow(params: Params, parent_run_id: str | None = None) -> dict:
    log = get_run_logger()
    with tracking.stage_run("tokenize", params, parent_run_id):
        src = stage_dir("curate") / FILES
        parts = input_parts(src)
        n_bytes = content_bytes(parts)
        with executor_session(params.ray, n_bytes) as use_ray:
            log.info("tokenize: %d parts, %.1f MB, %s", len(parts), n_bytes / 2**20,
                     "on Ray" if use_ray else "in this process")
            with AtomicDir(stage_dir("tokenize")) as out:
                stats = prepare(src, out, params.tokenize, WORK / "tokenize", use_ray=use_ray,
                                kept_tokenizer=DATA / KEPT_TOKENIZER)
        tracking.publish_metrics("tokenize", stats)
        log.info("tokenize: %s", stats)
    return stats
