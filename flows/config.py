"""The one typed config tree, assembled from each stage's parameters and loaded from ``params.yaml``.

Each section is declared once, beside the code that uses it (``ray_tasks/<stage>/params.py``,
``models/params.py`` for train, ``ray_tasks/executor.py`` for ``ray``, ``flows/tracking.py``
and ``flows/dvc_dag.py`` for ``mlflow`` and ``dvc``); this module only puts them together.
The same tree is ``params.yaml``, the Prefect parameter form and MLflow's flat params.

    params = load_params("params.yaml")       # raises ConfigError naming the key
    params.train.max_steps
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from flows.dvc_dag import DvcParams
from flows.serve_params import ServeParams
from flows.tracking import MlflowParams
from models.params import TrainParams
from ray_tasks.attribution.params import AttributionParams
from ray_tasks.curate.params import CurateParams
from ray_tasks.dedup.params import DedupParams
from ray_tasks.evaluate.params import EvaluateParams
from ray_tasks.executor import RayParams
from ray_tasks.ingest.params import SOURCE_KINDS, IngestParams
from ray_tasks.params import StageParams
from ray_tasks.tokenize.params import TokenizeParams

STAGES = ("ingest", "dedup", "curate", "attribution", "tokenize", "train", "evaluate")


class ConfigError(ValueError):
    """A bad key or value in params.yaml; the message names the key path."""


class Params(StageParams):
    """Root of params.yaml."""

    ingest: IngestParams = Field(default_factory=IngestParams)
    dedup: DedupParams = Field(default_factory=DedupParams)
    curate: CurateParams = Field(default_factory=CurateParams)
    attribution: AttributionParams = Field(default_factory=AttributionParams)
    tokenize: TokenizeParams = Field(default_factory=TokenizeParams)
    train: TrainParams = Field(default_factory=TrainParams)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    ray: RayParams = Field(default_factory=RayParams)
    mlflow: MlflowParams = Field(default_factory=MlflowParams)
    dvc: DvcParams = Field(default_factory=DvcParams)
    serve: ServeParams = Field(default_factory=ServeParams)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; any problem raises ConfigError naming the key."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: not found (run from the workspace that holds params.yaml)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse_params(raw, origin=str(path))


def parse_params(raw: dict[str, Any], origin: str = "params") -> Params:
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"] if not _is_union_tag(p)) or "<root>"
            problems.append(f"  {key}: {err['msg']}")
        raise ConfigError(f"{origin}: invalid parameters\n" + "\n".join(problems)) from None


def _is_union_tag(part: Any) -> bool:
    """Pydantic inserts the union tag (a source ``kind``) into error paths; users never wrote it as a key."""
    return isinstance(part, str) and part in SOURCE_KINDS
