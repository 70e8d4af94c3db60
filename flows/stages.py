"""Stage name -> its Prefect flow (the one hop from a dvc.yaml stage to its code)."""

from __future__ import annotations

from flows.attribution import attribution_flow
from flows.curate import curate_flow
from flows.dedup import dedup_flow
from flows.evaluate import evaluate_flow
from flows.ingest import ingest_flow
from flows.tokenize import tokenize_flow
from flows.train import train_flow

STAGE_FLOWS = {
    "ingest": ingest_flow,
    "dedup": dedup_flow,
    "curate": curate_flow,
    "attribution": attribution_flow,
    "tokenize": tokenize_flow,
    "train": train_flow,
    "evaluate": evaluate_flow,
}
