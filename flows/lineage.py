"""Where a model came from, and how two runs differ: queries over MLflow runs, datasets and git.

    starflow lineage models:/starflow-coder@champion     # or models:/starflow-coder/3, 3, a run id
    starflow compare RUN_A RUN_B                         # run ids, model versions, run/experiment names

Lineage follows the data, not the run tree: a model version's run (the evaluate run that
registered it) lists its inputs as MLflow datasets whose digest is the DVC md5
(``flows/tracking.py``); the run that produced each input is the one holding that digest as an
``output`` dataset (``datasets.digest = '<md5>'``); its inputs lead one stage further up, to
ingest. So a model evaluated in a later pipeline run than the one that trained it still finds
its train and tokenize runs. The restore recipe is the git commit whose dvc.lock records those
md5s (``git log -S <md5> -- dvc.lock``), then ``dvc checkout`` (from the cache) or ``dvc pull``.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from flows import dvc_dag

RUN_ID = re.compile(r"[0-9a-f]{32}")
MODEL_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:@(?P<alias>[\w-]+)|/(?P<version>\d+))")


class LineageError(ValueError):
    """A reference that names no run or model version (the message says which and why)."""


@dataclass
class Target:
    """What a reference resolved to: a run, and the model version when it named one."""

    run: Run
    model: str | None = None
    version: str | None = None


def resolve(client: MlflowClient, ref: str, model_name: str, experiment: str) -> Target:
    """A run from ``models:/NAME@ALIAS``, ``models:/NAME/N``, a version number of ``model_name``,
    a run id, or a run name / DVC experiment name in ``experiment`` (its latest run)."""
    if m := MODEL_URI.fullmatch(ref):
        return _from_version(client, m["name"], alias=m["alias"], version=m["version"])
    if ref.isdigit():
        return _from_version(client, model_name, version=ref)
    if RUN_ID.fullmatch(ref):
        try:
            return Target(client.get_run(ref))
        except MlflowException as exc:
            raise LineageError(f"no MLflow run {ref}: {exc.message}") from None
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise LineageError(f"no MLflow experiment {experiment!r} to look up {ref!r} in")
    for query in (f"attributes.run_name = '{ref}'", f"tags.`starflow.experiment` = '{ref}'"):
        runs = client.search_runs([exp.experiment_id], query, order_by=["attributes.start_time DESC"], max_results=50)
        if runs:  # an experiment's pipeline run before its stage runs
            return Target(next((r for r in runs if r.data.tags.get("starflow.kind") == "pipeline"), runs[0]))
    raise LineageError(f"{ref!r} is no model URI, version, run id, run name or experiment name in {experiment!r}")


def _from_version(client: MlflowClient, name: str, alias: str | None = None, version: str | None = None) -> Target:
    try:
        mv = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    except MlflowException as exc:
        raise LineageError(f"no model version models:/{name}{'@' + alias if alias else '/' + str(version)}: "
                           f"{exc.message}") from None
    if not mv.run_id:
        raise LineageError(f"model {name} version {mv.version} has no source run")
    return Target(client.get_run(mv.run_id), name, str(mv.version))


def datasets(run: Run, context: str | None = None) -> dict[str, str]:
    """``{name: digest}`` of a run's datasets (``input`` or ``output``; both when None)."""
    out = {}
    for di in run.inputs.dataset_inputs if run.inputs else []:
        ctx = next((t.value for t in di.tags if t.key == "mlflow.data.context"), None)
        if context is None or ctx == context:
            out[di.dataset.name] = di.dataset.digest
    return out


def producer(client: MlflowClient, experiment_id: str, path: str, digest: str) -> Run | None:
    """The stage run that wrote this data version (it holds it as an ``output`` dataset)."""
    runs = client.search_runs([experiment_id], f"datasets.digest = '{digest}'",
                              order_by=["attributes.start_time DESC"], max_results=200)
    return next((r for r in runs if r.data.tags.get("starflow.stage")
                 and datasets(r, "output").get(path) == digest), None)


@dataclass
class Lineage:
    """A model's lineage: one run per stage up to ingest, the data versions between them."""

    target: Target
    runs: dict[str, Run] = field(default_factory=dict)
    """stage -> the run that built it (the model's own run under its stage)."""
    data: dict[str, str] = field(default_factory=dict)
    """data path -> DVC md5 of every stage output the model was built from (for a pipeline run:
    every output it left)."""
    pipeline: Run | None = None

    def to_dict(self, ui_url: str) -> dict[str, Any]:
        from flows.tracking import run_url

        run = self.target.run
        tags = (self.pipeline or run).data.tags
        commit = run.data.tags.get("git.commit")
        return {
            "model": {"name": self.target.model, "version": self.target.version} if self.target.model else None,
            "run_id": run.info.run_id,
            "git_commit": commit,
            "params": {k: v for r in self.runs.values() for k, v in r.data.params.items()},
            "data": self.data,
            "prefect_flow_run": {"id": tags.get("prefect.flow_run_id"), "name": tags.get("prefect.flow_run_name"),
                                 "url": tags.get("prefect.flow_run_url")},
            "pipeline_run_id": self.pipeline.info.run_id if self.pipeline else None,
            "mlflow_runs": {stage: {"run_id": r.info.run_id, "commit": r.data.tags.get("git.commit"),
                                    "url": run_url(ui_url, r.info.experiment_id, r.info.run_id)}
                            for stage, r in self.runs.items()},
            "training_data": dict(sorted(self.runs["tokenize"].data.metrics.items())) if "tokenize" in self.runs else {},
            "training": training_lineage(self.runs.get("train")),
            "sources": sources_at(self.data.get(SOURCES_FILE)),
            "experiment": run.data.tags.get("starflow.experiment"),
            "restore": restore_steps(self.data, commit, run.data.tags.get("starflow.experiment")),
        }


SOURCES_FILE = "data/sources.json"
"""The sources' fingerprint ingest consumed (``flows/sources.py``): a data version like the others."""


def training_lineage(train: Run | None) -> dict[str, Any] | None:
    """What the train run started from and trained on (its ``starflow.*`` tags, models/ + flows/train.py):
    ``init_from`` (``scratch`` or ``NAME/VERSION``), ``data_version`` (the md5 of the shards) and,
    for continued training, the ``parent`` model version, its runs and the data it was trained on."""
    if train is None:
        return None
    tags = train.data.tags
    out = {key: tags[f"starflow.{key}"] for key in ("init_from", "data_version", "init_fallback")
           if f"starflow.{key}" in tags}
    parent = {k.removeprefix("starflow.parent."): v for k, v in sorted(tags.items()) if k.startswith("starflow.parent.")}
    return {**out, "parent": parent} if parent else out


def sources_at(md5: str | None) -> list[dict[str, Any]]:
    """Each source as that fingerprint saw it (git head commits, file counts), read from the DVC
    cache by its md5; empty when there is none or the cache lacks it."""
    if not md5 or not Path("dvc.yaml").exists():
        return []
    import json

    from ray_tasks.ingest.fingerprint import label

    try:
        cached = dvc_dag.cached_file(md5)
    except Exception:  # noqa: BLE001  (no DVC repository here: the lineage stands without it)
        return []
    if cached is None:
        return []
    return [{"source": label(e), "digest": e["digest"], **e["state"]}
            for e in json.loads(cached.read_text()).get("sources", [])]


def lineage(client: MlflowClient, target: Target) -> Lineage:
    """Walk from the target's run up through the producers of its inputs."""
    run = target.run
    found = Lineage(target)
    todo = [run]
    while todo:
        current = todo.pop()
        stage = current.data.tags.get("starflow.stage") or current.data.tags.get("starflow.kind", "run")
        if stage in found.runs:
            continue
        found.runs[stage] = current
        # A stage run leads up through its inputs; a pipeline run through everything it output.
        side = "output" if stage == "pipeline" else "input"
        for path, digest in datasets(current, side).items():
            found.data.setdefault(path, digest)
            if (up := producer(client, current.info.experiment_id, path, digest)) is not None:
                todo.append(up)
    if parent := run.data.tags.get("mlflow.parentRunId"):
        found.pipeline = client.get_run(parent)
    found.runs = dict(sorted(found.runs.items(), key=lambda kv: _stage_order(kv[0])))
    found.data = dict(sorted(found.data.items(), key=lambda kv: _stage_order(Path(kv[0]).name)))
    return found


def _stage_order(stage: str) -> int:
    names = dvc_dag.stage_names() if Path("dvc.yaml").exists() else []
    return names.index(stage) if stage in names else len(names)


def restore_steps(data: dict[str, str], commit: str | None, experiment: str | None = None) -> list[str]:
    """Commands that bring these data versions back into a workspace.

    The run's own commit is the code; the data versions are in the dvc.lock of the commit that
    recorded them, which (runs commit dvc.lock after they finish) is usually a later one. A
    parameter run's are in its DVC experiment's commit (``refs/exps``), which ``dvc exp apply``
    brings back with its params."""
    paths = " ".join(data)
    if experiment:
        return [f"dvc exp apply {experiment}   # its params.yaml, dvc.lock and outputs",
                f"dvc pull {paths}   # if the local cache lacks them"]
    recorded = lock_commit(data)
    if recorded:
        return [f"git checkout {recorded}   # its dvc.lock records these md5s", f"dvc checkout {paths}",
                f"dvc pull {paths}   # if the local cache lacks them"]
    if data and _in_lock(Path("dvc.lock").read_text() if Path("dvc.lock").exists() else "", data):
        return ["# the workspace's dvc.lock records these md5s (not yet committed: git add dvc.lock && git commit)",
                f"dvc checkout {paths}", f"dvc pull {paths}   # if the local cache lacks them"]
    steps = [f"git checkout {commit}   # the code these runs ran" if commit else "# no git commit was recorded"]
    return steps + ["# no committed dvc.lock records these md5s: the data is in the DVC cache/remote under "
                    "them, but only a dvc.lock naming them restores it (commit dvc.lock after each run)"]


def lock_commit(data: dict[str, str]) -> str | None:
    """The newest git commit whose dvc.lock holds every md5 in ``data``."""
    if not data:
        return None
    first = next(iter(data.values()))
    log = _git("log", "--format=%H", "-S", first, "--", "dvc.lock")
    for commit in (log or "").split():
        if _in_lock(_git("show", f"{commit}:dvc.lock") or "", data):
            return commit
    return None


def _in_lock(lock_text: str, data: dict[str, str]) -> bool:
    return all(md5 in lock_text for md5 in data.values())


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


# --- compare --------------------------------------------------------------------------------

def comparable(client: MlflowClient, target: Target) -> Run:
    """A model version compares as the pipeline run that evaluated it (its headline metrics and
    changed params), when there is one; a run compares as itself."""
    parent = target.run.data.tags.get("mlflow.parentRunId")
    return client.get_run(parent) if target.model and parent else target.run


def param_rows(a: Run, b: Run, defaults: dict[str, Any], show_all: bool = False) -> list[tuple[str, str, str]]:
    """``(name, a, b)`` for each param that differs (all with ``show_all``). A pipeline run logs
    only the params that differ from the defaults, so a key it lacks has its default value."""
    pa, pb = _params_of(a, defaults), _params_of(b, defaults)
    rows = []
    for key in sorted(set(pa) | set(pb)):
        va, vb = pa.get(key, "—"), pb.get(key, "—")
        if show_all or va != vb:
            rows.append((key, va, vb))
    return rows


def _params_of(run: Run, defaults: dict[str, Any]) -> dict[str, str]:
    params = dict(run.data.params)
    if run.data.tags.get("starflow.kind") == "pipeline":
        return {**{k: str(v) for k, v in defaults.items()}, **params}
    return params


def metric_rows(a: Run, b: Run) -> list[tuple[str, float | None, float | None]]:
    """``(name, a, b)`` for every metric either run logged (latest values)."""
    ma, mb = a.data.metrics, b.data.metrics
    return [(k, ma.get(k), mb.get(k)) for k in sorted(set(ma) | set(mb))]


def compare(client: MlflowClient, a: Target, b: Target, defaults: dict[str, Any], show_all: bool = False) -> dict:
    ra, rb = comparable(client, a), comparable(client, b)
    return {
        "a": _label(ra), "b": _label(rb),
        "params": [{"name": n, "a": x, "b": y} for n, x, y in param_rows(ra, rb, defaults, show_all)],
        "metrics": [{"name": n, "a": x, "b": y} for n, x, y in metric_rows(ra, rb)],
    }


def _label(run: Run) -> dict[str, str]:
    return {"run_id": run.info.run_id, "name": run.info.run_name,
            "experiment": run.data.tags.get("starflow.experiment", ""),
            "commit": run.data.tags.get("git.commit", "")}
