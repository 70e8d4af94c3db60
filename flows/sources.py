"""Stage ``sources``: fingerprint every ``ingest.sources`` entry into ``data/sources.json``.

dvc.yaml marks it ``always_changed`` and ingest depends on its output, so each `dvc repro` and
each `starflow run` fingerprints the sources first (seconds: listings, sizes, mtimes, remote head
commits; no file is read) and ingest re-runs only when a source grew or changed: a new file in a
folder, a new commit upstream of a git source, another Parquet file. The fingerprint itself is
``ray_tasks/ingest/fingerprint.py``; what ingest consumed is dvc.lock's md5 of this file (its
dep), which the ingest MLflow run also carries (``dvc.dep.data/sources.json``), and the file
itself is in the DVC cache under that md5.

    starflow stage sources      # what dvc.yaml runs: the check alone, no Prefect API, no MLflow
    starflow status             # runs it, then says which stages are stale and why

The file is rewritten only when its content changes: an unchanged source leaves it
byte-for-byte (and mtime) as it was, which is what keeps ingest up to date.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows.config import Params
from flows.workspace import DATA
from ray_tasks.ingest.fingerprint import changed_sources, fingerprint_sources, label
from ray_tasks.tables import write_json_atomic

SOURCES_FILE = DATA / "sources.json"
"""The sources stage's output, ingest's dep (dvc.yaml names the same path)."""


def check_sources(params: Params, workspace: Path = Path(".")) -> dict[str, Any]:
    """Fingerprint the sources, write ``data/sources.json`` when it changed, say what changed.

    ``changed`` compares with the fingerprint ingest last consumed (dvc.lock), so it names what a
    stale ingest will pick up, also when the check ran before without ingest running after it."""
    path = workspace / SOURCES_FILE
    now = fingerprint_sources(params.ingest.sources, workspace=workspace)
    text = json.dumps(now, indent=2, sort_keys=True) + "\n"
    previous = path.read_text() if path.exists() else None
    consumed = consumed_fingerprint(workspace, previous)
    if text != previous:
        write_json_atomic(now, path)  # the same bytes as ``text`` (indent 2, sorted keys)
    return {"digest": now["digest"], "changed": changed_sources(consumed, now), "sources": [
        {"source": label(e), "digest": e["digest"][:12], **_figures(e["state"])} for e in now["sources"]]}


def consumed_fingerprint(workspace: Path = Path("."), current: str | None = None) -> dict[str, Any] | None:
    """The fingerprint ingest last ran on: the file whose md5 dvc.lock records as ingest's dep.

    That is the file on disk when the md5 matches (the usual case), else the DVC cache's copy;
    None before ingest ever ran with this dep (or when the cache lost it)."""
    from flows import dvc_dag

    dep = next((d for d in dvc_dag.locked("ingest", workspace / "dvc.lock").get("deps", [])
                if d.get("path") == SOURCES_FILE.as_posix()), None)
    if dep is None or not dep.get("md5"):
        return None
    if current is not None and _md5(current.encode()) == dep["md5"]:
        return json.loads(current)
    cached = dvc_dag.cached_file(dep["md5"], workspace)
    return json.loads(cached.read_text()) if cached is not None else None


@flow(name="stage-sources")
def sources_flow(params: Params, parent_run_id: str | None = None) -> dict[str, Any]:
    """The check as a child flow run of the pipeline, its per-source table an artifact (``sources-stats``)."""
    from prefect.artifacts import create_table_artifact

    from flows.tracking import artifact_key

    log = get_run_logger()
    result = check_sources(params)
    if result["changed"]:
        log.info("sources changed since ingest last ran:\n  %s", "\n  ".join(result["changed"]))
    else:
        log.info("sources unchanged since ingest last ran (fingerprint %s)", result["digest"][:12])
    create_table_artifact(key=artifact_key("sources-stats"), table=result["sources"],
                          description="ingest's sources: fingerprint per source")
    return result


def _figures(state: dict[str, Any]) -> dict[str, Any]:
    if "heads" in state:
        return {"heads": ", ".join(h[:10] for h in state["heads"].values())}
    if "distributions" in state:
        return {"distributions": len(state["distributions"])}
    return {"files": state["files"], "bytes": state["bytes"]}


def _md5(data: bytes) -> str:
    import hashlib

    return hashlib.md5(data).hexdigest()


SOURCE_UPDATED = "starflow.source.updated"
"""The Prefect event a changed source is announced with; the pipeline deployment's trigger
(``flows/deployments.py``, ``infra/prefect.yaml``) starts a run on it, whoever emits it."""


def notify_source_updated(checked: dict[str, Any], ingested: bool, workspace: Path = Path(".")) -> Any:
    """Emit ``starflow.source.updated`` for this workspace's sources and wait until it is sent.

    The resource is the sources' fingerprint (``starflow.sources.<digest>``), so the event names
    the data version it announces; the payload says what changed and whether ingest already ran
    on it here. Needs a Prefect server (``PREFECT_API_URL``): the ephemeral API has no one to
    trigger."""
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    event = emit_event(
        event=SOURCE_UPDATED,
        resource={"prefect.resource.id": f"starflow.sources.{checked['digest'][:16]}",
                  "prefect.resource.name": workspace.resolve().name,
                  "starflow.workspace": str(workspace.resolve())},
        payload={"digest": checked["digest"], "changed": checked["changed"], "ingested": ingested},
    )
    if event is None:
        raise RuntimeError(f"the {SOURCE_UPDATED} event could not be emitted (see the log above)")
    EventsWorker.drain_all()  # a CLI process exits right after: send it now, not at interpreter exit
    return event
