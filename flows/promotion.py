"""The promotion gate on the MLflow registry: registration by weights, the champion's weights, the alias moves.

* A model is registered once per set of weights: ``weights_digest`` (sha256 over the weight
  files and ``config.json``) is the model-version tag ``weights_sha256``; evaluating weights
  that already have a version reuses that version (no new one), so changing only evaluation
  settings never makes a "new" model.
* The evaluated version gets alias ``challenger``. The champion's weights are loaded from the
  registry (``champion_model_dir``) so that ``flows/evaluate.py`` scores both in the same run
  on the same data with the same settings; ``run_gate`` applies the rule
  (``ray_tasks/evaluate/gate.py``) to those two scores and moves ``champion``.
* The decision, both scores and what they were measured on (evaluation data with its md5 and
  version, settings, the run) are tagged on the model version and the evaluate run
  (``promotion.*``) and published as a Prefect markdown artifact (``evaluate-promotion``);
  ``flows/evaluate.py`` also keeps them as ``data/evaluate/promotion.json`` and an MLflow artifact.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import RunTag
from mlflow.exceptions import MlflowException

from flows.tracking import artifact_key
from ray_tasks.evaluate.gate import GateDecision, decide, fmt_score
from ray_tasks.evaluate.params import GateParams

CHALLENGER, CHAMPION = "challenger", "champion"
DIGEST_TAG = "weights_sha256"
"""Model-version tag: ``weights_digest`` of the version's HF folder."""
WEIGHT_SUFFIXES = (".safetensors", ".bin")
TAG_LIMIT = 5000
"""MLflow's longest model-version tag value."""


def weights_digest(model_dir: str | Path) -> str:
    """sha256 over the weight files and ``config.json`` of an HF folder (names, sizes, bytes).

    The config is included because the same tensors under another config (RoPE theta, window)
    are another model; tokenizer files are not weights (a model's tensors fix its vocabulary)."""
    root = Path(model_dir)
    files = sorted(p for p in root.iterdir() if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.name == "config.json"))
    if not any(p.suffix in WEIGHT_SUFFIXES for p in files):
        raise FileNotFoundError(f"{root}: no weight files ({', '.join(WEIGHT_SUFFIXES)}) to digest")
    h = hashlib.sha256()
    for path in files:
        h.update(f"{path.name}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def find_version(client: MlflowClient, model_name: str, digest: str) -> str | None:
    """The first registered version of ``model_name`` with these weights, if any."""
    found = client.search_model_versions(f"name = '{model_name}' and tags.{DIGEST_TAG} = '{digest}'")
    return str(min(int(v.version) for v in found)) if found else None


def register_or_reuse(client: MlflowClient, model_name: str, model_dir: str, run_id: str) -> tuple[str, bool]:
    """The version holding these weights: the existing one, or a new pyfunc version (logged in the
    active run). Either way it becomes ``challenger``. Returns (version, reused)."""
    digest = weights_digest(model_dir)
    version = find_version(client, model_name, digest)
    reused = version is not None
    if version is None:
        version = _log_model(model_name, model_dir)
        client.set_model_version_tag(model_name, version, DIGEST_TAG, digest)
        for key, value in lineage_tags(model_dir).items():
            client.set_model_version_tag(model_name, version, key, value)
    mark_challenger(client, model_name, version, run_id)
    return version, reused


def _log_model(model_name: str, model_dir: str) -> str:
    """Log the HF export as a pyfunc model and register a new version of ``model_name``."""
    import mlflow
    from mlflow.models import infer_signature

    from models.pyfunc import CodeCompletionModel

    signature = infer_signature(["def add(a, b):\n"], ["    return a + b\n"],
                                params={"max_new_tokens": 64, "temperature": 0.0, "top_p": 0.95})
    info = mlflow.pyfunc.log_model(
        signature=signature,
        name="model",
        python_model=CodeCompletionModel(),
        artifacts={"hf_model": model_dir},
        registered_model_name=model_name,
        pip_requirements=["torch", "transformers", "tokenizers", "rich"],
    )
    return str(info.registered_model_version)


def mark_challenger(client: MlflowClient, model_name: str, version: str, run_id: str | None = None) -> None:
    client.set_registered_model_alias(model_name, CHALLENGER, version)
    if run_id:
        client.set_model_version_tag(model_name, version, "evaluate_run_id", run_id)


def champion(client: MlflowClient, model_name: str):
    """The version holding alias ``champion`` (None: there is none yet)."""
    try:
        return client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None


def champion_model_dir(model_name: str, version: str, dst: str | Path) -> str:
    """The HF folder of a registered version, downloaded into ``dst`` through the pyfunc flavour."""
    import mlflow.pyfunc

    loaded = mlflow.pyfunc.load_model(f"models:/{model_name}/{version}", dst_path=str(dst), suppress_warnings=True)
    return loaded.unwrap_python_model().model_dir


def run_gate(client: MlflowClient, model_name: str, version: str, score: float, champion_version: str | None,
             champion_score: float | None, gate: GateParams, evidence: dict[str, Any], run_id: str | None = None,
             unscored_reason: str | None = None) -> GateDecision:
    """Decide on challenger ``version`` against ``champion_version`` (both scored in this run), move
    the alias, record the decision."""
    decision = decide(gate, str(version), score, champion_version, champion_score, evidence, unscored_reason)
    if decision.promoted:
        client.set_registered_model_alias(model_name, CHAMPION, decision.challenger_version)
    _record(client, model_name, decision, run_id)
    return decision


def _record(client: MlflowClient, model_name: str, d: GateDecision, run_id: str | None) -> None:
    tags = {
        "promotion.decision": d.outcome,
        "promotion.metric": d.metric,
        "promotion.challenger_version": d.challenger_version,
        "promotion.challenger_score": fmt_score(d.challenger_score),
        "promotion.champion_score": fmt_score(d.champion_score),
        "promotion.champion_version": d.champion_version or "",
        "promotion.reason": d.reason,
        "promotion.evidence": json.dumps(d.evidence, sort_keys=True)[:TAG_LIMIT],
    }
    data = d.evidence.get("evaluation_data") or {}
    if data.get("md5"):
        tags["promotion.data_md5"] = str(data["md5"])
    if run_id:
        tags["promotion.scored_in_run"] = run_id
    for key, value in tags.items():
        client.set_model_version_tag(model_name, d.challenger_version, key, value)
    if run_id:
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    from prefect.artifacts import create_markdown_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is not None:  # artifacts need a flow run (plain calls in tests have none)
        create_markdown_artifact(key=artifact_key("evaluate-promotion"), markdown=d.markdown(model_name),
                                 description=f"promotion gate for {model_name} v{d.challenger_version}")


def lineage_tags(model_dir: str | Path) -> dict[str, str]:
    """The train stage's lineage tags (parent model, data versions) from the export's
    ``training_data.json`` (``flows/train.py``), so the model version carries them too. Read as
    plain JSON: the gate does not import the training code."""
    record = Path(model_dir) / "training_data.json"
    if not record.exists():
        return {}
    return {k: str(v) for k, v in json.loads(record.read_text()).get("tags", {}).items()}
