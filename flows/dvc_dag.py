"""DVC as the judge of what is stale, and the recorder of what ran.

Wiring: the pipeline flow asks DVC whether a stage's
deps/params/outs changed since ``dvc.lock`` last recorded them, runs the stage's
Prefect flow in-process when they did, then ``dvc commit``s the stage so the lock
holds exactly what it consumed and produced. Stages run one at a time (DVC
holds one repo lock); parallelism lives inside a stage (Ray, DeepSpeed).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ray_tasks.params import StageParams


class DvcParams(StageParams):
    """What a pipeline run does with DVC besides recording stages (``params.yaml: dvc``)."""

    push: bool = True
    """Push stage outputs to the default DVC remote after a run."""


def locked(stage: str, lock: Path = Path("dvc.lock")) -> dict:
    """What ``dvc.lock`` last recorded for a stage (``deps``, ``params``, ``outs``); empty before any lock."""
    if not lock.exists():
        return {}
    return (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).get(stage, {})


def stage_names(dvc_yaml: Path = Path("dvc.yaml")) -> list[str]:
    """Stages in the order dvc.yaml declares them (a topological order by construction)."""
    return list((yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages", {}))


def changes(stage: str, repo=None) -> list:
    """What DVC sees changed for one stage; empty when it is up to date.

    ``repo``: an open ``dvc.repo.Repo`` to ask (``open_repo``), so that checking every stage of
    an up-to-date DAG loads the project once; valid until the next commit."""
    if repo is not None:
        status = repo.status(targets=[stage])
        return status.get(stage, []) if status else []
    with open_repo() as repo:
        return changes(stage, repo)


def open_repo(root: str = "."):
    """The DVC project here, for several questions in a row (a context manager: close it)."""
    from dvc.repo import Repo

    return Repo(root)


def cached_file(md5: str, workspace: Path = Path(".")) -> Path | None:
    """The DVC cache's copy of a file output by its md5 (None when the cache does not hold it)."""
    from dvc.repo import Repo

    with Repo(str(workspace)) as repo:
        path = Path(repo.cache.repo.oid_to_path(md5))
    return path if path.is_file() else None


def commit(stage: str) -> None:
    from dvc.repo import Repo

    with Repo(".") as repo:
        repo.commit(stage, force=True)


def push() -> int:
    from dvc.repo import Repo

    with Repo(".") as repo:
        if not repo.config.get("core", {}).get("remote"):
            return 0
        return repo.push()
