"""Where each stage reads and writes, relative to the workspace (the folder holding dvc.yaml).

These paths are the contract between ``dvc.yaml`` and the stage flows: DVC
tracks ``data/<stage>`` as the stage's output and ``metrics/<stage>.json`` as its
metrics, so a path changed here must change there too.
"""

from __future__ import annotations

from pathlib import Path

PARAMS = "params.yaml"
"""The settings DVC tracks (each stage's ``params:`` section is read from it)."""
DATA = Path("data")
METRICS = Path("metrics")
WORK = Path(".starflow")
"""Scratch space that survives interruptions (training checkpoints to resume from)."""


def stage_dir(stage: str) -> Path:
    return DATA / stage


def metrics_file(stage: str) -> Path:
    return METRICS / f"{stage}.json"


def work_dir(stage: str) -> Path:
    """A stage's resumable work (finished units a re-run reuses), outside its DVC output: the
    output appears whole at the end, this survives a killed run."""
    return WORK / "work" / stage


FILES = "files"
"""A stage's files table: a partitioned dataset folder (``ray_tasks/datasets.py``); read it with
``ray_tasks.tables.read_table`` (or ``pq.read_table``) like a single file."""
REJECTED = "rejected.parquet"
