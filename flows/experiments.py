"""Parameter runs are DVC experiments: changed settings never touch the working copy.

A pipeline run given settings other than its params file's (a section from the Prefect UI form,
``starflow run --set train.lr=3e-4``, a schedule's parameters) runs in a git worktree of HEAD
holding the working copy's uncommitted changes and the changed params.yaml, with the workspace's
DVC cache, and is saved there with ``dvc exp save --name NAME``. So it has its own params,
dvc.lock and outputs; ``dvc checkout`` gives it the outputs of the stages the change leaves up to
date, so only stages that it makes stale run; ``dvc exp show`` in the workspace lists it (git
worktrees share refs, and ``refs/exps`` is where DVC keeps experiments); ``dvc exp apply NAME`` or
``dvc exp branch NAME BRANCH`` restore it (its outputs are in the cache); and the working copy's
params.yaml, dvc.lock and data/ stay as they were.

Why not ``dvc exp run --temp -S ...``: it runs each stage's ``cmd`` (``starflow stage NAME``) in
a process of its own, so the Prefect tree (the pipeline run with a child run per stage) would
become unrelated top-level runs. Here the pipeline's own stage loop runs inside the worktree.

Uncommitted changes are included, as ``dvc exp run`` includes them: modified tracked files and
untracked files that git does not ignore are copied into the worktree and saved with the
experiment, so it is what ran. The working copy needs a first git commit (an experiment is a
commit on top of one).

    with experiments.workspace(name, experiments.resolve("params.yaml", {}, ["train.lr=3e-4"])):
        ...  # cwd is the experiment's worktree
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml
from pydantic import BaseModel

from flows import tracking
from flows.config import ConfigError, Params, load_params, parse_params
from flows.workspace import PARAMS, WORK

@dataclass(frozen=True)
class Wanted:
    """The settings a run asked for: the raw tree to write as params.yaml, validated, and what changed."""

    raw: dict[str, Any]
    params: Params
    changed: dict[str, Any]
    """Dotted key -> new value, for each setting that differs from the params file's."""


def resolve(params_file: str | Path, sections: dict[str, BaseModel], overrides: list[str]) -> Wanted:
    """``params_file``'s tree with ``sections`` replacing theirs and ``overrides`` applied, validated.

    Only the values that differ are written into the file's own tree (a section from the form
    holds every default): a default spelled out would change the params DVC compares and make a
    stage stale for nothing. Raises ConfigError naming the key for an unknown key or a bad value."""
    raw = yaml.safe_load(Path(params_file).read_text()) or {}
    base = load_params(params_file)
    before = base.model_dump(mode="json")
    wanted: dict[str, Any] = {}
    for name, section in sections.items():
        wanted.update(_leaf_changes(section.model_dump(mode="json"), before[name], name))
    for item in overrides:
        key, value = _parse_override(item)
        _check_key(before, key, item)
        wanted[key] = value
    tree = copy.deepcopy(raw)
    for key, value in wanted.items():
        _set(tree, before, key, value)
    params = parse_params(tree, origin=f"{params_file} with the run's parameters")
    after = params.model_dump(mode="json")
    # Validated values back into the tree: a float given as "3e-4" (a string to YAML 1.1) is written as one.
    changed = {k: _get(after, k) for k in wanted if _get(after, k) != _get(before, k)}
    for key, value in changed.items():
        _set(tree, before, key, value)
    return Wanted(raw=tree, params=parse_params(tree), changed=changed)


def _parse_override(item: str) -> tuple[str, Any]:
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r}: expected dotted.key=value (e.g. train.lr=3e-4)")
    try:
        return key.strip(), yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {item!r}: the value is not valid YAML: {exc}") from None


def _check_key(tree: dict[str, Any], key: str, item: str) -> None:
    """Fail unless ``key`` names a setting of the resolved tree (list items by index: ``ingest.sources.0.path``)."""
    node: Any = tree
    for depth, part in enumerate(key.split(".")):
        where = ".".join(key.split(".")[:depth]) or "the params tree"
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict):
            raise ConfigError(f"override {item!r}: unknown key {key!r} ({where} has: {', '.join(node)})")
        elif isinstance(node, list):
            raise ConfigError(f"override {item!r}: {where} is a list of {len(node)}; {part!r} is not an index in it")
        else:
            raise ConfigError(f"override {item!r}: unknown key {key!r} ({where} is a value, not a section)")


def _leaf_changes(new: Any, old: Any, prefix: str) -> dict[str, Any]:
    """Dotted keys whose values differ between two dumped trees (lists compare whole)."""
    if isinstance(new, dict) and isinstance(old, dict):
        out: dict[str, Any] = {}
        for k in new:
            out.update(_leaf_changes(new[k], old.get(k), f"{prefix}.{k}"))
        return out
    return {} if new == old else {prefix: new}


def _get(tree: Any, key: str) -> Any:
    for part in key.split("."):
        tree = tree[int(part)] if isinstance(tree, list) else tree[part]
    return tree


def _set(tree: dict[str, Any], defaults: dict[str, Any], key: str, value: Any) -> None:
    """Set a dotted key in the file's tree; a section the file leaves to its defaults is added empty, a list whole."""
    parts = key.split(".")
    node: Any = tree
    for depth, part in enumerate(parts[:-1]):
        index = int(part) if isinstance(node, list) else part
        if isinstance(node, dict) and part not in node:
            default = _get(defaults, ".".join(parts[: depth + 1]))
            node[part] = copy.deepcopy(default) if isinstance(default, list) else {}
        node = node[index]
    last = parts[-1]
    node[int(last) if isinstance(node, list) else last] = value


@contextlib.contextmanager
def workspace(name: str, wanted: Wanted) -> Iterator[Path]:
    """Run the body inside experiment ``name``'s worktree (cwd), then save it with ``dvc exp save``.

    The worktree is removed afterwards, also after a failure (nothing is saved then)."""
    main = Path.cwd()
    check_can_start(name)
    # Created from here: a new MLflow experiment's relative artifact root is the workspace's, not the worktree's.
    uri = _absolute_uri(tracking.setup_mlflow(wanted.params), main)
    tree = (WORK / "experiments" / name).resolve()
    if tree.exists():
        _git(main, "worktree", "remove", "--force", str(tree), check=False)
        shutil.rmtree(tree, ignore_errors=True)
    tree.parent.mkdir(parents=True, exist_ok=True)
    _git(main, "worktree", "add", "--detach", "--quiet", str(tree), "HEAD")
    try:
        untracked = _copy_uncommitted(main, tree)
        (tree / PARAMS).write_text(yaml.safe_dump(wanted.raw, sort_keys=False))
        _share_dvc_cache(main, tree)
        with _inside(tree), env_set({"MLFLOW_TRACKING_URI": uri, tracking.EXPERIMENT_ENV: name}):
            yield tree
            _save(name, untracked)
    finally:
        _git(main, "worktree", "remove", "--force", str(tree), check=False)
        shutil.rmtree(tree, ignore_errors=True)
        with contextlib.suppress(OSError):
            tree.parent.rmdir()  # when no other experiment is running


def check_can_start(name: str) -> None:
    """Fail unless experiment ``name`` can be made here: a git commit to build on, a free, valid name."""
    if _git(Path.cwd(), "rev-parse", "--verify", "--quiet", "HEAD", check=False).returncode != 0:
        raise ConfigError("a parameter run is a DVC experiment, a commit on top of HEAD: this workspace has no "
                          "git commit yet (git add -A && git commit), or run without changed parameters")
    if _git(Path.cwd(), "check-ref-format", f"refs/exps/{name}", check=False).returncode != 0:
        raise ConfigError(f"experiment name {name!r} is not a valid git ref name")
    from dvc.repo import Repo

    with Repo(".") as repo:
        existing = {exp[0] for exps in repo.experiments.ls(all_commits=True).values() for exp in exps}
    if name in existing:
        raise ConfigError(f"DVC experiment {name!r} exists already: pick another name, or `dvc exp remove {name}`")


def _absolute_uri(uri: str, main: Path) -> str:
    """The tracking URI as seen from the workspace: a relative SQLite or folder store must stay the workspace's."""
    if uri.startswith("sqlite:///") and not uri[len("sqlite:///"):].startswith("/"):
        return f"sqlite:///{(main / uri[len('sqlite:///'):]).resolve()}"
    if "://" not in uri and not uri.startswith("databricks"):
        return str((main / uri).resolve())
    return uri


def _copy_uncommitted(main: Path, tree: Path) -> list[str]:
    """The working copy's changes since HEAD into the worktree; the untracked files copied (to save with it)."""
    changed = _git(main, "diff", "--name-only", "-z", "HEAD").stdout.split("\0")
    untracked = _git(main, "ls-files", "--others", "--exclude-standard", "-z").stdout.split("\0")
    for rel in filter(None, changed + untracked):
        src, dst = main / rel, tree / rel
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        elif not src.exists():
            dst.unlink(missing_ok=True)
    return [rel for rel in untracked if rel]


def _share_dvc_cache(main: Path, tree: Path) -> None:
    """The worktree uses the workspace's cache and remotes, and gets the outputs its dvc.lock records."""
    from dvc.repo import Repo

    local = main / ".dvc" / "config.local"
    if local.exists():
        shutil.copy2(local, tree / ".dvc" / "config.local")
    with Repo(str(main)) as repo:
        cache_dir = repo.cache.local_cache_dir
    with Repo(str(tree)) as repo, repo.config.edit("local") as conf:
        conf.setdefault("cache", {})["dir"] = str(Path(cache_dir).resolve())
    with Repo(str(tree)) as repo:
        # Missing outputs (never run, or gc'ed) are fine: their stages are stale and run.
        repo.checkout(allow_missing=True)


def _save(name: str, untracked: list[str]) -> None:
    from dvc.repo import Repo

    with Repo(".") as repo:
        repo.experiments.save(name=name, include_untracked=untracked or None)


@contextlib.contextmanager
def _inside(folder: Path) -> Iterator[None]:
    # The stage flows' paths (flows/workspace.py) are relative to the cwd, and DVC finds its repo from it.
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


@contextlib.contextmanager
def env_set(values: dict[str, str]) -> Iterator[None]:
    """``values`` in os.environ for the body (read by stage code in this process and the ones it starts)."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc
