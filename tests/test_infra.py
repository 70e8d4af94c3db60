"""infra/ checked offline: every file parses, compose files against the Compose Specification schema,
KubeRay manifests against the KubeRay CRDs' OpenAPI schemas, prefect.yaml against Prefect's own
deploy model and the flows it names, the worker's commands against Prefect's CLI.

The schemas are kept in infra/schemas/ (sources.yaml: upstream URL, licence, git blob SHA), so CI
needs neither a network, a container engine (no `docker compose` plugin on the CI machines) nor a
Kubernetes API server.
"""

from __future__ import annotations

import configparser
import copy
import hashlib
import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.paths import ROOT

INFRA = ROOT / "infra"
SCHEMAS = INFRA / "schemas"
COMPOSE_FILES = sorted([INFRA / "docker-compose.yml", *(INFRA / "compose").glob("*.yaml")])
MANIFESTS = sorted((INFRA / "kuberay").glob("*.yaml"))
WORKER_UNIT = INFRA / "prefect" / "starflow-worker.service"
HOSTFILE_LINE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*\s+slots=[1-9][0-9]*$")


def _yaml(path: Path):
    return yaml.load(path.read_text(), Loader=yaml.CSafeLoader)


# ---------------------------------------------------------------- every file parses

def _parse(path: Path) -> None:
    """Parse one infra file by its kind; an unknown kind fails, so a new file cannot go unchecked."""
    name, text = path.name, path.read_text()
    if name.endswith((".yaml", ".yml")):
        assert list(yaml.load_all(text, Loader=yaml.CSafeLoader)), f"{path}: empty YAML"
    elif name.endswith(".json"):
        json.loads(text)
    elif name.endswith(".sql"):
        import sqlparse

        statements = [s for s in sqlparse.parse(text) if str(s).strip()]
        assert statements and all(s.get_type() != "UNKNOWN" for s in statements), f"{path}: not SQL statements"
    elif name.endswith(".service"):
        _unit(path)
    elif name.endswith("Dockerfile"):
        from dockerfile_parse import DockerfileParser

        instructions = [i["instruction"] for i in DockerfileParser(fileobj=open(path, "rb")).structure]
        instructions = [i for i in instructions if i != "COMMENT"]
        assert instructions[:1] == ["FROM"], f"{path}: no FROM first"
    elif name.startswith("hostfile"):
        for line in text.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                assert HOSTFILE_LINE.match(line.strip()), f"{path}: {line!r} is not `host slots=N`"
    elif name.endswith(".md"):
        pass
    else:
        raise AssertionError(f"{path}: no check for this kind of file; add one to tests/test_infra.py")


def _unit(path: Path) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read_string(path.read_text())
    assert {"Unit", "Service", "Install"} <= set(unit.sections()), f"{path}: missing sections"
    return unit


INFRA_FILES = sorted(p for p in INFRA.rglob("*") if p.is_file())


@pytest.mark.parametrize("path", INFRA_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_infra_file_parses(path):
    _parse(path)


def test_schemas_are_the_published_files():
    """The kept schemas are byte-for-byte what sources.yaml names (git blob SHA-1 upstream)."""
    sources = _yaml(SCHEMAS / "sources.yaml")
    assert set(sources) == {p.name for p in SCHEMAS.iterdir()} - {"sources.yaml"}
    for name, source in sources.items():
        data = (SCHEMAS / name).read_bytes()
        blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        assert blob == source["blob"], f"infra/schemas/{name} differs from {source['source']}"


# ---------------------------------------------------------------- compose

def _compose_errors(path: Path, doc: dict) -> list[str]:
    """What `docker compose config` rejects: the Compose Specification schema, then references
    between parts of the file (services, volumes, included and mounted files), which the schema
    cannot express."""
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
    services = doc.get("services", {})
    volumes = set(doc.get("volumes") or {})
    for name, service in services.items():
        for dep in service.get("depends_on") or {}:
            if dep not in services:
                errors.append(f"services/{name}/depends_on: no service {dep!r}")
        for mount in service.get("volumes") or []:
            source = mount.split(":")[0] if isinstance(mount, str) else mount.get("source", "")
            if source.startswith((".", "/")):
                if "$" not in source and not (path.parent / source).exists():
                    errors.append(f"services/{name}/volumes: {source} does not exist")
            elif source and "$" not in source and source not in volumes:
                errors.append(f"services/{name}/volumes: no top-level volume {source!r}")
        build = service.get("build")
        if isinstance(build, dict):
            context = path.parent / build.get("context", ".")
            if not (context / build.get("dockerfile", "Dockerfile")).exists():
                errors.append(f"services/{name}/build: no {build.get('dockerfile')} in {context}")
    for included in doc.get("include") or []:
        if not (path.parent / included).exists():
            errors.append(f"include: {included} does not exist")
    return errors


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_is_valid(path):
    assert _compose_errors(path, _yaml(path)) == []


def test_included_compose_files_combine():
    """`include` fails on a service, volume or port defined twice; every port is published once."""
    top = _yaml(INFRA / "docker-compose.yml")
    seen: dict[str, set[str]] = {"services": set(), "volumes": set(), "ports": set()}
    for included in top["include"]:
        doc = _yaml(INFRA / included)
        ports = {str(p).split(":")[0] for s in doc["services"].values() for p in s.get("ports", [])}
        defined = {"services": set(doc["services"]), "volumes": set(doc.get("volumes") or {}), "ports": ports}
        for kind, names in defined.items():
            assert not names & seen[kind], f"{included}: {kind} {names & seen[kind]} already defined"
            seen[kind] |= names
    assert {"prefect-server", "mlflow-server", "minio", "ray-head", "ray-worker"} <= seen["services"]


@pytest.mark.parametrize("breakage", ["misspelled key", "unknown dependency", "wrong type"])
def test_broken_compose_file_fails(breakage):
    path = INFRA / "compose" / "prefect.yaml"
    doc = _yaml(path)
    server = doc["services"]["prefect-server"]
    if breakage == "misspelled key":
        server["enviroment"] = server.pop("environment")
    elif breakage == "unknown dependency":
        server["depends_on"] = {"postgres": {"condition": "service_healthy"}}
    else:
        server["ports"] = "4200:4200"
    assert _compose_errors(path, doc)


def _parse_command(argv: list[str]) -> dict:
    """Parse a server command with the installed tool's own CLI parser (without running it): an
    unknown option or a bad value raises. Returns the parsed options."""
    tool, *args = argv
    if tool == "prefect":
        from prefect.cli.server import server_app

        assert args[0] == "server", argv
        return dict(server_app.parse_args(args[1:], exit_on_error=False, print_error=False)[1].arguments)
    commands = {"mlflow": ("mlflow.cli", "server"), "ray": ("ray.scripts.scripts", "start")}
    module, name = commands[tool]
    assert args[0] == name, argv
    command = getattr(__import__(module, fromlist=[name]), name)
    return command.make_context(name, args[1:]).params


def test_compose_server_commands_parse_with_their_tools():
    parsed = {}
    for path in COMPOSE_FILES:
        for name, service in (_yaml(path).get("services") or {}).items():
            command = service.get("command")
            if isinstance(command, str) and command.split()[0] in ("prefect", "mlflow", "ray"):
                parsed[name] = _parse_command(shlex.split(command))
    assert set(parsed) == {"prefect-server", "mlflow-server", "ray-head", "ray-worker"}
    assert parsed["mlflow-server"]["artifacts_destination"] == "s3://mlflow"
    assert parsed["ray-head"]["head"] and parsed["ray-worker"]["address"] == "ray-head:6379"
    with pytest.raises(Exception, match="dashbord-host"):
        _parse_command(["ray", "start", "--head", "--dashbord-host", "0.0.0.0"])


# ---------------------------------------------------------------- KubeRay manifests

def _strict(schema):
    """The CRD's OpenAPI schema as the API server applies it to `kubectl apply` (field validation
    `Strict`, the default since Kubernetes 1.27): an object with declared properties rejects
    unknown fields unless marked x-kubernetes-preserve-unknown-fields. JSON Schema allows them by
    default, so the walk sets additionalProperties: false (kubeconform's openapi2jsonschema
    `--strict` does the same; it is a Go tool, not available to this Python CI)."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _crd_validators() -> dict[tuple[str, str], jsonschema.Validator]:
    """(apiVersion, kind) -> a validator for each served version of each kept CRD."""
    validators = {}
    for path in SCHEMAS.glob("ray.io_*.yaml"):
        crd = _yaml(path)
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schema = _strict(version["schema"]["openAPIV3Schema"])
                key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
                validators[key] = jsonschema.Draft4Validator(schema)
    return validators


@pytest.fixture(scope="module")
def crds():
    return _crd_validators()


def _manifest_errors(doc: dict, crds) -> list[str]:
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key not in crds:
        return [f"no CRD kept for {key} (have {sorted(crds)})"]
    name = doc.get("metadata", {}).get("name", "")
    errors = [] if re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) else [f"metadata.name {name!r} is not DNS-1123"]
    return errors + [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in crds[key].iter_errors(doc)]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_kuberay_manifest_is_valid(path, crds):
    import ray

    for doc in yaml.safe_load_all(path.read_text()):
        assert _manifest_errors(doc, crds) == []
        cluster = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]
        # Ray Client and job submission need the cluster's Ray to be the driver's (the locked set's).
        assert cluster["rayVersion"] == ray.__version__, f"{path.name}: rayVersion is not {ray.__version__}"
        groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
        for group in groups:  # KubeRay passes rayStartParams to `ray start` as --key=value
            _parse_command(["ray", "start", *(f"--{k}={v}" for k, v in group["rayStartParams"].items())])
        for container in (c for g in groups for c in g["template"]["spec"]["containers"]):
            assert f":{ray.__version__}-py311" in container["image"], f"{path.name}: {container['image']}"


@pytest.mark.parametrize("breakage", ["misspelled field", "wrong type", "missing required field", "unknown kind"])
def test_broken_manifest_fails(breakage, crds):
    doc = _yaml(INFRA / "kuberay" / "raycluster.yaml")
    broken = copy.deepcopy(doc)
    if breakage == "misspelled field":
        broken["spec"]["workerGroupSpec"] = broken["spec"].pop("workerGroupSpecs")
    elif breakage == "wrong type":
        broken["spec"]["workerGroupSpecs"][0]["replicas"] = "four"
    elif breakage == "missing required field":
        del broken["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["name"]
    else:
        broken["kind"] = "RayClustr"
    assert _manifest_errors(doc, crds) == []
    assert _manifest_errors(broken, crds)


# ---------------------------------------------------------------- Prefect: deployments, pool, worker

def _deployments() -> list[dict]:
    from prefect.cli.deploy._models import DeploymentConfig, PrefectYamlModel

    raw = _yaml(INFRA / "prefect.yaml")
    PrefectYamlModel.model_validate(raw)  # what `prefect deploy` reads (extra keys ignored there...)
    for deployment in raw["deployments"]:  # ...so a misspelled key would be silently dropped
        unknown = set(deployment) - set(DeploymentConfig.model_fields)
        assert not unknown, f"infra/prefect.yaml deployment {deployment['name']}: unknown keys {unknown}"
    return raw["deployments"]


def _flow_errors(deployment: dict) -> list[str]:
    """The entrypoint imports and names a flow, and the deployment's parameters bind to it."""
    from prefect.exceptions import ParameterTypeError, SignatureMismatchError
    from prefect.flows import load_flow_from_entrypoint

    try:
        flow = load_flow_from_entrypoint(str(ROOT / deployment["entrypoint"]))
    except Exception as exc:  # noqa: BLE001  (any import/attribute error is the finding)
        return [f"{deployment['entrypoint']}: {type(exc).__name__}: {exc}"]
    try:
        flow.validate_parameters(deployment.get("parameters") or {})
    except (ParameterTypeError, SignatureMismatchError) as exc:
        return [f"{deployment['name']}: parameters: {exc}"]
    return []


def test_prefect_yaml_deployments_name_real_flows():
    deployments = _deployments()
    names = [d["name"] for d in deployments]
    assert len(names) == len(set(names))
    for deployment in deployments:
        assert _flow_errors(deployment) == []


def test_prefect_yaml_schedules_and_pool():
    from prefect.client.schemas.schedules import CronSchedule

    pools = set()
    for deployment in _deployments():
        pools.add(deployment["work_pool"]["name"])
        assert deployment["concurrency_limit"]["limit"] == 1, "DVC allows one run per workspace"
        for schedule in deployment.get("schedules") or []:
            CronSchedule(cron=schedule["cron"], timezone=schedule.get("timezone"))
            assert schedule.get("slug"), "a schedule without a slug is re-created (and re-enabled) on redeploy"
    unit = _unit(WORKER_UNIT)
    assert pools == {_worker_pool(unit["Service"]["ExecStart"])}


def test_prefect_yaml_matches_starflow_serve():
    """The work-pool deployments are the ones `starflow serve` creates: `pipeline` on params.yaml's
    retraining schedule (same slug) and one per dvc.yaml stage, run with `stages: [<stage>]`."""
    from flows.config import load_params
    from flows.deployments import ServeParams, forms

    params = load_params(ROOT / "params.yaml")
    by_name = {d["name"]: d for d in _deployments()}
    for name, (_, fixed, _) in forms(params).items():
        assert name in by_name, f"infra/prefect.yaml has no deployment {name!r} (starflow serve has)"
        assert (by_name[name].get("parameters") or {}) == fixed, f"deployment {name}: parameters differ from serve's"
    serve = getattr(params, "serve", None) or ServeParams()
    [schedule] = by_name["pipeline"]["schedules"]
    assert (schedule["cron"], schedule["timezone"], schedule["slug"]) == (serve.cron, serve.timezone, serve.slug)


@pytest.mark.parametrize("breakage", ["unknown flow", "unknown parameter", "wrong parameter type"])
def test_broken_deployment_fails(breakage):
    deployment = copy.deepcopy(_deployments()[0])
    if breakage == "unknown flow":
        deployment["entrypoint"] = "flows/pipeline.py:no_such_flow"
    elif breakage == "unknown parameter":
        deployment["parameters"] = {"param_file": "params.tiny.yaml"}
    else:
        deployment["parameters"] = {"force": 3}
    assert _flow_errors(deployment)


def _worker_pool(exec_start: str) -> str:
    from prefect.cli.worker import worker_app

    argv = shlex.split(exec_start)
    assert Path(argv[0]).name == "prefect" and argv[1] == "worker", exec_start
    _, bound, *_ = worker_app.parse_args(argv[2:], exit_on_error=False, print_error=False)
    assert bound.arguments["worker_type"] == "process" and bound.arguments["limit"] == 1
    return bound.arguments["work_pool_name"]


def test_worker_commands_parse_with_prefect_cli():
    """ExecStartPre/ExecStart are real `prefect` commands (Prefect's own argument parser)."""
    from prefect.cli.work_pool import work_pool_app

    service = _unit(WORKER_UNIT)["Service"]
    create = shlex.split(service["ExecStartPre"])
    _, bound, *_ = work_pool_app.parse_args(create[2:], exit_on_error=False, print_error=False)
    assert bound.arguments["type"] == "process"
    assert Path(bound.arguments["base_job_template"]).name == "process-pool.json"
    assert bound.arguments["name"] == _worker_pool(service["ExecStart"])
    with pytest.raises(Exception, match="--limt"):
        _worker_pool(service["ExecStart"].replace("--limit", "--limt"))


def test_process_pool_template_is_a_process_job():
    """The kept base job template has the process worker's job fields and a valid variables schema."""
    from prefect.workers.process import ProcessWorker

    template = json.loads((INFRA / "prefect" / "process-pool.json").read_text())
    default = ProcessWorker.get_default_base_job_template()
    assert set(template["job_configuration"]) == set(default["job_configuration"])
    jsonschema.Draft202012Validator.check_schema(template["variables"])
    variables = template["variables"]["properties"]
    defaults = {name: v["default"] for name, v in variables.items() if "default" in v}
    jsonschema.Draft202012Validator(template["variables"]).validate(defaults)
    config = ProcessWorker.job_configuration.model_validate({**defaults, "command": "true"})
    assert config.env["PYTHONUNBUFFERED"] == "1"


# ---------------------------------------------------------------- versions agree with the locked set

def test_images_match_the_locked_versions():
    """Servers and clients at one version: images carry the versions constraints.txt pins."""
    import mlflow
    import prefect
    from dockerfile_parse import DockerfileParser

    prefect_compose = _yaml(INFRA / "compose" / "prefect.yaml")
    server_image = prefect_compose["services"]["prefect-server"]["image"]
    assert server_image.startswith(f"prefecthq/prefect:{prefect.__version__}-")
    assert _yaml(INFRA / "prefect.yaml")["prefect-version"] == prefect.__version__
    dockerfile = DockerfileParser(fileobj=open(INFRA / "compose" / "mlflow.Dockerfile", "rb"))
    assert dockerfile.baseimage == f"ghcr.io/mlflow/mlflow:v{mlflow.__version__}"
    ray_compose = _yaml(INFRA / "compose" / "ray.yaml")
    import ray

    for service in ray_compose["services"].values():
        assert f"ray:{ray.__version__}-py311" in service["image"]
