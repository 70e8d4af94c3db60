"""The pipeline flow: one Prefect flow run for the whole DAG, a child flow run per executed stage.

    starflow run                  # what `make run` does
    starflow run --params params.tiny.yaml   # the whole DAG on the tiny configuration (~35 s)
    starflow run --set train.lr=3e-4         # a parameter run: a DVC experiment (flows/experiments.py)
    dvc repro                     # the same DAG, driven by DVC (each stage: `starflow stage NAME`)

Every run starts with the ``sources`` check (``flows/sources.py``): each source's fingerprint is
written to ``data/sources.json``, ingest's dep, so a grown or changed source (a new upstream
commit included) makes ingest stale and an unchanged one does not. When no stage asked for is
stale the run ends Completed with the message "nothing new", in seconds: the check and DVC's
status, no MLflow run, no Ray, no stage code imported (``flows/stages.py`` imports lazily).

While a run is in progress its MLflow run id is in ``STARFLOW_MLFLOW_PARENT_RUN_ID``, so that a
stage started from it in another process (``dvc repro``, ``starflow stage``, launched training
ranks) nests under it; a stage started from a shell without it stands alone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed

from flows import dvc_dag, experiments, tracking
from flows.config import Params, load_params
from flows.dvc_dag import DvcParams
from flows.stages import STAGE_FLOWS
from flows.tracking import MlflowParams
from flows.workspace import PARAMS, WORK
from models.params import TrainParams
from ray_tasks.attribution.params import AttributionParams
from ray_tasks.curate.params import CurateParams
from ray_tasks.dedup.params import DedupParams
from ray_tasks.evaluate.params import EvaluateParams
from ray_tasks.executor import RayParams, ray_running, wants_ray
from ray_tasks.ingest.params import IngestParams
from ray_tasks.tokenize.params import TokenizeParams
from ray_tasks.tables import write_json_atomic


@flow(name="starflow-pipeline")
def pipeline(
    ingest: IngestParams | None = None,
    dedup: DedupParams | None = None,
    curate: CurateParams | None = None,
    attribution: AttributionParams | None = None,
    tokenize: TokenizeParams | None = None,
    train: TrainParams | None = None,
    evaluate: EvaluateParams | None = None,
    ray: RayParams | None = None,
    mlflow: MlflowParams | None = None,
    dvc: DvcParams | None = None,
    overrides: list[str] | None = None,
    force: list[str] | None = None,
    stages: list[str] | None = None,
    params_file: str = PARAMS,
    experiment: str | None = None,
) -> dict:  # returned as a Completed state whose message says what ran ("nothing new": none)
    """Run every stale stage of dvc.yaml in order, with the settings of ``params_file``.

    A section given (the UI form has one per params.yaml section) replaces that section of
    ``params_file``'s tree; ``overrides`` (``["train.lr=3e-4"]``, values parsed as YAML) are then
    applied and validated against the tree, so an unknown key or a bad value fails here, before
    any stage runs. When the result differs from ``params_file`` the run is a DVC experiment
    (``flows/experiments.py``): it runs in a worktree of its own, named ``experiment`` or after
    this flow run, and the working copy's params.yaml, dvc.lock and data/ stay as they were.
    ``stages`` restricts the run to those stages (the stale or forced ones among them run);
    ``force`` runs stages even when DVC finds them up to date. The run's final state is Completed
    with the message "nothing new" when no stage ran, else "ran <stages>"."""
    chosen = _stage_set(stages, "stages to run") if stages else set(STAGE_FLOWS)
    force = _stage_set(force, "stages to force")
    given = dict(ingest=ingest, dedup=dedup, curate=curate, attribution=attribution, tokenize=tokenize,
                 train=train, evaluate=evaluate, ray=ray, mlflow=mlflow, dvc=dvc)
    wanted = experiments.resolve(params_file, {k: v for k, v in given.items() if v is not None}, overrides or [])
    log = get_run_logger()
    if wanted.changed:
        name = experiment or str(flow_run.name)
        log.info("parameter run: DVC experiment %s with %s", name, wanted.changed)
        with experiments.workspace(name, wanted):
            summary = _run_stale_stages(wanted.params, chosen, force, log, experiment=name, changed=wanted.changed)
        summary |= {"experiment": name, "changed": wanted.changed}
    else:
        with params_in_place(Path(params_file)):
            params = load_params(PARAMS)
            summary = _run_stale_stages(params, chosen, force, log)
    write_json_atomic(summary, WORK / "last_run.json")
    tracking.publish_markdown("pipeline", _report(summary))
    log.info("pipeline: %s", summary)
    return Completed(message=run_message(summary), data=summary)


NOTHING_NEW = "nothing new"
"""The final state's message of a run in which no stage ran (the sources unchanged, all up to date)."""


def run_message(summary: dict) -> str:
    return f"ran {', '.join(summary['ran'])}" if summary["ran"] else NOTHING_NEW


def _stage_set(names: list[str] | None, what: str) -> set[str]:
    names = set(names or [])
    if unknown := names - set(STAGE_FLOWS):
        raise ValueError(f"unknown {what}: {sorted(unknown)}; expected some of {', '.join(STAGE_FLOWS)}")
    return names


def _run_stale_stages(params: Params, chosen: set[str], force: set[str], log,
                      experiment: str | None = None, changed: dict | None = None) -> dict:
    ran: dict[str, float] = {}
    skipped: list[str] = []
    excluded: list[str] = []
    parent_id: str | None = None
    session = contextlib.ExitStack()
    names = dvc_dag.stage_names()
    checked = _check_sources(params, log) if SOURCES in names and chosen & {SOURCES, "ingest"} else None
    asking = None  # one open DVC project for the statuses between two commits (loaded once, not per stage)
    try:
        for stage in names:
            if stage == SOURCES:  # checked above, before anything else
                continue
            if stage not in chosen:
                excluded.append(stage)
                log.info("stage %s is not among the stages asked for: left as it is", stage)
                continue
            asking = asking or dvc_dag.open_repo()
            why = dvc_dag.changes(stage, asking)
            if not why and stage not in force:
                skipped.append(stage)
                log.info("stage %s is up to date: skipped", stage)
                continue
            log.info("stage %s is stale (%s): running", stage, why or "forced")
            if parent_id is None:
                parent_id = tracking.start_pipeline_run(params, experiment=experiment, changed=changed)
                session.enter_context(experiments.env_set({tracking.PARENT_RUN_ENV: parent_id}))
                if wants_ray(params.ray, ray_up=False):
                    # Ray for every stage of this run, started with the first stale one: each stage
                    # alone would start and stop its own (7-10 s each on 2 cores).
                    session.enter_context(ray_running(params.ray))
            asking.close()  # the stage writes its outputs and commit changes dvc.lock: ask afresh after it
            asking = None
            t0 = time.perf_counter()
            STAGE_FLOWS[stage](params, parent_run_id=parent_id)
            dvc_dag.commit(stage)
            ran[stage] = round(time.perf_counter() - t0, 1)
        pushed = dvc_dag.push() if ran and params.dvc.push else 0
    except BaseException:
        if parent_id:
            tracking.fail_pipeline_run(parent_id)
        raise
    finally:
        if asking is not None:
            asking.close()
        session.close()
    summary = {"ran": list(ran), "skipped": skipped, "excluded": excluded, "wall_s": ran, "dvc_pushed": pushed}
    if checked is not None:
        summary["sources"] = {"digest": checked["digest"], "changed": checked["changed"]}
    if parent_id:
        tracking.finish_pipeline_run(parent_id, ran)
        summary["mlflow_parent_run_id"] = parent_id
    return summary


SOURCES = "sources"
"""The dvc.yaml stage that fingerprints ingest's sources (``always_changed``: it runs every time)."""


def _check_sources(params: Params, log) -> dict:
    """The ``sources`` stage as a child flow run, recorded in dvc.lock: ingest is stale from here
    on exactly when a source changed since ingest last consumed it. Not a stage that "ran": it
    runs every time, and starts neither the MLflow pipeline run nor Ray."""
    t0 = time.perf_counter()
    checked = STAGE_FLOWS[SOURCES](params)
    dvc_dag.commit(SOURCES)
    what = "; ".join(checked["changed"]) or "unchanged since ingest last ran"
    log.info("sources checked in %.1f s: %s", time.perf_counter() - t0, what)
    return checked


@contextlib.contextmanager
def params_in_place(path: Path):
    """``path``'s settings as the workspace's params.yaml for the length of a run, then params.yaml back.

    DVC reads each stage's params from params.yaml (it has no option for another file), so for
    its staleness checks and dvc.lock to describe what ran, the file it reads must hold the
    settings the stages run with. The user's params.yaml is kept aside under .starflow/ and put
    back afterwards, also after a failure; one left aside by a killed run is put back first."""
    target, saved = Path(PARAMS), WORK / "params.yaml.saved"
    if saved.exists():
        os.replace(saved, target)
    if path.resolve() == target.resolve():
        yield
        return
    WORK.mkdir(parents=True, exist_ok=True)
    shutil.copy2(target, saved)
    try:
        shutil.copyfile(path, target)
        yield
    finally:
        os.replace(saved, target)


def _report(summary: dict) -> str:
    lines = ["# StarFlow pipeline run", ""]
    if "experiment" in summary:
        changed = ", ".join(f"`{k}={v}`" for k, v in summary["changed"].items())
        lines += [f"DVC experiment `{summary['experiment']}` ({changed}): `dvc exp show`, `dvc exp apply "
                  f"{summary['experiment']}`", ""]
    if "sources" in summary:
        changed = "; ".join(summary["sources"]["changed"]) or "unchanged since ingest last ran"
        lines += [f"Sources (fingerprint `{summary['sources']['digest'][:12]}`): {changed}", ""]
    lines += [f"**{run_message(summary)}**", ""]
    lines += ["| stage | status | wall s |", "|---|---|---|"]
    lines += [f"| {s} | ran | {t} |" for s, t in summary["wall_s"].items()]
    lines += [f"| {s} | up to date | |" for s in summary["skipped"]]
    lines += [f"| {s} | not asked for | |" for s in summary["excluded"]]
    return "\n".join(lines)
