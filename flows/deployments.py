"""Deployments: the pipeline and each stage, startable from the Prefect UI with params.yaml's values.

    starflow server &                     # Prefect + MLflow for this workspace (flows/servers.py)
    starflow serve                        # deployments below, served from this process until Ctrl-C
    starflow serve --cron "*/30 * * * *"  # another retraining schedule for this serve only

What ``starflow serve`` creates (all runs execute in a subprocess of the serve process, in this
workspace, so they read its params.yaml and dvc.lock and skip what DVC finds up to date):

- ``starflow-pipeline/pipeline``: the whole DAG. Its form has one field per params.yaml section
  (``ingest`` ... ``dvc``), each prefilled with the section as params.yaml holds it when serve
  starts, plus ``overrides`` (``train.lr=3e-4`` strings, validated against the tree), ``force``,
  ``stages`` and ``experiment``. Changing one field and submitting makes the run a DVC
  experiment (the pipeline flow compares the result with params.yaml; params.yaml itself is
  never written); "Quick run" and the schedule pass no sections, so they run params.yaml as it
  is at run time. The retraining schedule is ``params.yaml: serve`` (``ServeParams``); the run
  checks the sources' fingerprints first and, with nothing new, ends Completed ("nothing new")
  in seconds. An event trigger starts it too: ``starflow.source.updated`` (``starflow ingest
  --notify``, or anything that emits it) creates a run with the same (no) parameters.
- ``starflow-pipeline/<stage>`` for each dvc.yaml stage: the same flow with ``stages=[stage]``
  fixed, its form showing only that stage's section, ``overrides``, ``force`` and ``experiment``.

Forms are the flow's own parameter schema (Prefect builds it from the pipeline's typed
signature: the Pydantic section models) with today's values injected as the sections' defaults;
the UI renders a ``$ref`` with a ``default`` as a prefilled object form, so one field can be edited
without opening the rest. Values are injected when serve starts and again whenever params.yaml
changes while it serves (checked every 5 s), so the form shows the file as it is, not as it was.

Schedules always carry a slug (``serve.slug``): a redeploy then updates that schedule instead of
replacing it (PrefectHQ/prefect#19302: slug-less schedules are recreated, so a paused one comes
back active). Prefect's update still sends ``active``, so ``serve`` reads the existing schedule
first and keeps its state: ``serve.active`` only applies to a schedule being created. Stopping
serve does not pause anything (``pause_on_shutdown=False``; PrefectHQ/prefect#16363): runs due
while it is down wait as Late and start when it is back.

Concurrency: DVC holds one lock per workspace, so this process runs at most one flow run at a
time (``serve(limit=1)``); further runs (a second click, the schedule firing during a run) stay
Scheduled/Late until the running one ends, then start. Serve one process per workspace.

Serve vs a work pool + worker: ``serve`` needs nothing but this process and a Prefect server;
the runs execute here, on this machine, in this checkout (the code at its current commit, its
data/ and DVC cache), which is what a laptop or a single training box wants. A work pool +
worker (``infra/prefect.yaml``: ``prefect deploy --all``, then ``prefect worker start --pool
starflow``) decouples where deployments are declared from where runs execute: workers on other
machines or in Kubernetes pull runs from the pool, pool-level concurrency limits apply across
workers (``prefect work-pool set-concurrency-limit starflow 1``), and the code comes from a git
pull step. The definitions must match these: entrypoint ``flows/pipeline.py:pipeline``, the
stage deployments with ``parameters: {stages: [<stage>]}``, the schedule with a slug and no
``active:`` key (``prefect deploy`` then sends none, and a paused schedule stays paused). Their
forms are Prefect's own (a null toggle per section, not prefilled): the prefilled forms and their
refresh are what ``serve`` adds.
"""

from __future__ import annotations

import inspect

import threading
from pathlib import Path
from typing import Any

from prefect import serve
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentUpdate
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
from prefect.logging import get_logger
from prefect.schedules import Cron
from prefect.utilities.callables import ParameterSchema, parameter_schema
from pydantic import ValidationError

from flows.config import STAGES, ConfigError, Params, load_params
from flows.pipeline import pipeline
from flows.serve_params import ServeParams
from flows.sources import SOURCE_UPDATED
from flows.workspace import PARAMS

RUNS_AT_ONCE = 1
"""Flow runs the serve process executes at the same time: DVC allows one (its repo lock)."""
FORM_REFRESH_S = 5.0
"""How often serve checks params.yaml for changes to show in the forms."""
RUN_OPTIONS = ("overrides", "force", "stages", "experiment")
STAGE_RUN_OPTIONS = ("overrides", "force", "experiment")
OPTION_DESCRIPTIONS = {
    "overrides": "Changes as key.path=value (value parsed as YAML), e.g. train.lr=3e-4; checked "
                 "against the params tree. Any change makes the run a DVC experiment.",
    "force": "Stages to run even if DVC finds them up to date.",
    "stages": "Run only these stages (the stale or forced ones among them); empty: all.",
    "experiment": "Name of the DVC experiment, when parameters differ from params.yaml (default: the flow run's name).",
}
RUN_SECTIONS = [name for name in Params.model_fields if name in inspect.signature(pipeline.fn).parameters]
"""The params sections a run takes (``serve`` is the deployments' own, not a run's)."""


def serve_workspace(params_file: str | Path = PARAMS, cron: str | None = None) -> None:
    """Serve the pipeline and stage deployments of the workspace in the current folder, until Ctrl-C.

    While it serves, a thread keeps the forms' defaults equal to ``params_file``: serve runs for
    weeks, and a form still showing last month's params.yaml would make every custom run an
    experiment against values nobody chose."""
    params = load_params(params_file)
    settings = params.serve
    if cron is not None:
        try:
            settings = ServeParams.model_validate({**settings.model_dump(), "cron": cron})
        except ValidationError as exc:
            raise ConfigError(f"--cron: {exc.errors()[0]['msg']}") from None
    deployments = workspace_deployments(params, settings, params_file=str(params_file))
    stop = threading.Event()
    watcher = threading.Thread(target=keep_forms_current, args=(Path(params_file), stop), daemon=True)
    watcher.start()
    try:
        serve(*deployments, limit=RUNS_AT_ONCE, pause_on_shutdown=False)
    finally:
        stop.set()


def workspace_deployments(params: Params, settings: ServeParams, params_file: str = PARAMS) -> list[RunnerDeployment]:
    """The pipeline deployment (with the schedule) and one deployment per stage, forms prefilled from ``params``."""
    return [_deployment(name, schema, fixed, description, *((_schedules(settings, name), source_triggers())
                                                             if name == "pipeline" else (None, None)))
            for name, (schema, fixed, description) in forms(params, params_file).items()]


def source_triggers() -> list[DeploymentEventTrigger]:
    """The pipeline deployment's event trigger: one run per ``starflow.source.updated`` event.

    Any resource: the event's name is the contract (``starflow ingest --notify`` sends the
    sources' fingerprint as its resource; a data-drop job may send its own). The run passes no
    parameters, so it runs params.yaml as it is and checks the fingerprints itself; events that
    arrive together queue (one run at a time), and the later runs end "nothing new" in seconds."""
    return [DeploymentEventTrigger(name="source updated", expect={SOURCE_UPDATED},
                                   description="A source of ingest grew or changed: bring the DAG up to date.")]


def forms(params: Params, params_file: str = PARAMS) -> dict[str, tuple[dict[str, Any], dict[str, Any], str]]:
    """Deployment name -> (its parameter form, its fixed parameters, its description)."""
    fixed = {} if params_file == PARAMS else {"params_file": params_file}
    out = {"pipeline": (form_schema(params, RUN_SECTIONS, RUN_OPTIONS), fixed,
                        "The whole DAG: every stale stage, in dvc.yaml order.")}
    for stage in STAGES:
        out[stage] = (form_schema(params, [stage], STAGE_RUN_OPTIONS), {**fixed, "stages": [stage]},
                      f"The {stage} stage alone (when stale or forced).")
    return out


def keep_forms_current(params_file: Path, stop: threading.Event, every_s: float = FORM_REFRESH_S) -> None:
    """Until ``stop``: when ``params_file`` changes, re-inject its values into the deployments' forms.

    A file that does not validate is logged and left for the next change; the forms keep their values."""
    log = get_logger("starflow.serve")
    seen = _mtime(params_file)
    while not stop.wait(every_s):
        if (mtime := _mtime(params_file)) == seen:
            continue
        seen = mtime
        try:
            params = load_params(params_file)
        except ConfigError as exc:
            log.warning("%s\nthe deployment forms keep their values until the file is valid", exc)
            continue
        try:
            with get_client(sync_client=True) as client:
                for name, (schema, _, _) in forms(params, str(params_file)).items():
                    deployment = client.read_deployment_by_name(f"{pipeline.name}/{name}")
                    client.update_deployment(deployment.id, DeploymentUpdate(parameter_openapi_schema=schema))
        except Exception:  # the server away for a moment must not end the refreshing: retried at the next check
            log.exception("could not update the deployment forms from %s", params_file)
            seen = None
            continue
        log.info("deployment forms now show %s as it is", params_file)


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def form_schema(params: Params, sections: list[str], options: tuple[str, ...]) -> dict[str, Any]:
    """The pipeline's parameter schema cut to ``sections`` + ``options``, sections defaulting to ``params``'s values.

    Prefect's schema declares each section ``Section | None = None``: the UI shows that as a null
    toggle. Here a section is its model (``$ref``) with today's values as ``default``, the form
    Prefect itself makes for a parameter with a model default."""
    base = parameter_schema(pipeline).model_dump(exclude_unset=True)
    today = params.model_dump(mode="json")
    properties = {}
    for position, name in enumerate([*sections, *options]):
        prop = dict(base["properties"][name], position=position)
        if name in Params.model_fields:
            ref = next(choice for choice in prop.pop("anyOf") if "$ref" in choice)
            prop.update(ref, default=today[name], description=_first_line(Params.model_fields[name].annotation.__doc__))
        else:
            prop["description"] = OPTION_DESCRIPTIONS[name]
        properties[name] = prop
    return {**base, "properties": properties, "required": []}


def _deployment(name: str, schema: dict[str, Any], parameters: dict[str, Any], description: str,
                schedules: list[Cron] | None = None,
                triggers: list[DeploymentEventTrigger] | None = None) -> RunnerDeployment:
    deployment = pipeline.to_deployment(
        name=name,
        parameters=parameters,
        schedules=schedules,
        triggers=triggers,
        description=description,
        tags=["starflow"],
        # The module path, so a run finds the flow whatever folder the workspace is in.
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    # Prefect has no public way to give a deployment a schema other than its flow's signature.
    deployment._parameter_openapi_schema = ParameterSchema.model_validate(schema)
    return deployment


def _schedules(settings: ServeParams, deployment: str) -> list[Cron]:
    """The retraining schedule with its slug; an existing one keeps the active/paused state it has."""
    if not settings.cron:
        return []
    active = _existing_schedule_state(f"{pipeline.name}/{deployment}", settings.slug)
    cron = Cron(settings.cron, timezone=settings.timezone, slug=settings.slug,
                active=settings.active if active is None else active)
    return [cron]


def _existing_schedule_state(deployment: str, slug: str) -> bool | None:
    """Whether the deployment's schedule ``slug`` is active now; None when there is none yet."""
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            found = client.read_deployment_by_name(deployment)
        except ObjectNotFound:
            return None
    return next((s.active for s in found.schedules if s.slug == slug), None)


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if doc else ""
