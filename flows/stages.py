"""Stage name -> its Prefect flow (the one hop from a dvc.yaml stage to its code).

A stage's flow module is imported when the stage is first looked up, not when this module is:
a pipeline run that finds nothing new (the ``sources`` check, then DVC's status) must not spend
its seconds importing torch, transformers and DeepSpeed for stages it will not run (~5 s of the
~12 s an eager import took on 2 cores).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from importlib import import_module
from typing import Any

STAGE_FLOW_PATHS = {
    "sources": "flows.sources:sources_flow",
    "ingest": "flows.ingest:ingest_flow",
    "dedup": "flows.dedup:dedup_flow",
    "curate": "flows.curate:curate_flow",
    "attribution": "flows.attribution:attribution_flow",
    "tokenize": "flows.tokenize:tokenize_flow",
    "train": "flows.train:train_flow",
    "evaluate": "flows.evaluate:evaluate_flow",
}
"""Stage -> ``module:flow``, in dvc.yaml order."""


class _StageFlows(Mapping[str, Any]):
    """A read-only mapping whose values are imported on first access."""

    def __init__(self, paths: dict[str, str]):
        self._paths = paths
        self._loaded: dict[str, Any] = {}

    def __getitem__(self, stage: str) -> Any:
        if stage not in self._loaded:
            module, name = self._paths[stage].split(":")
            self._loaded[stage] = getattr(import_module(module), name)
        return self._loaded[stage]

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)


STAGE_FLOWS: Mapping[str, Any] = _StageFlows(STAGE_FLOW_PATHS)
