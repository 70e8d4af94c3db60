"""Each stage's ``deps`` in dvc.yaml cover every project file the stage runs, and nothing more.

Why: DVC re-runs a stage only when one of its deps changes, so a project file a stage imports
but does not list is an edit that re-runs nothing, and dvc.lock then claims outputs that
today's code would not produce. The files a stage runs are computed from the code: the
stage's flow (``flows/<stage>.py``) and, transitively, every project module it imports
(module-level or inside functions), plus package data beside them.

Some edges are not followed: ``flows/config.py`` assembles every stage's params section, but
a stage depends on the *code* of its own section only; the other sections' values cannot reach
it (DVC tracks each stage's values through ``params:``), so from flows/config.py the packages of
other stages' params (their ``params.py`` and ``__init__.py``) and sections no stage reads are
not followed.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest
import yaml

from tests.paths import ROOT

PACKAGES = ("flows", "ray_tasks", "models")
STAGES = ("ingest", "dedup", "curate", "attribution", "tokenize", "train", "evaluate")
CONFIG = "flows/config.py"
OWN_PARAMS = {
    "ingest": "ray_tasks/ingest/params.py", "dedup": "ray_tasks/dedup/params.py",
    "curate": "ray_tasks/curate/params.py", "attribution": "ray_tasks/attribution/params.py",
    "tokenize": "ray_tasks/tokenize/params.py",
    "train": "models/params.py", "evaluate": "ray_tasks/evaluate/params.py",
}
"""The params module of each stage: the one section of flows/config.py a stage's code reads."""
NO_STAGE_SECTIONS = {"flows/serve_params.py"}
"""Sections of flows/config.py that no stage reads (``serve``: the deployments' schedule)."""


def module_file(name: str) -> str | None:
    """``ray_tasks.dedup.stage`` -> ``ray_tasks/dedup/stage.py`` (or the package's __init__)."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate.relative_to(ROOT).as_posix()
    return None


@cache
def imports_of(path: str) -> frozenset[str]:
    """Project files ``path`` imports, and the ``__init__.py`` of every package on the way."""
    tree = ast.parse((ROOT / path).read_text())
    package = Path(path).parent.as_posix().replace("/", ".")
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
    files: set[str] = set()
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
            if f := module_file(".".join(parts[:i])):
                files.add(f)
    return frozenset(files - {path})


def stage_files(stage: str) -> set[str]:
    """Every project file the stage runs: its flow and its transitive project imports."""
    seen: set[str] = set()
    todo = [f"flows/{stage}.py"]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for dep in imports_of(path):
            if path == CONFIG and (dep in NO_STAGE_SECTIONS
                                   or any(_in_package(dep, other) for other in STAGES if other != stage)):
                continue
            todo.append(dep)
    for path in list(seen):  # package data travels with its code
        data = ROOT / Path(path).parent / "data"
        if data.is_dir():
            seen.update(p.relative_to(ROOT).as_posix() for p in data.rglob("*") if p.is_file())
    return seen


def _in_package(path: str, stage: str) -> bool:
    """Whether ``path`` sits in the package that holds ``stage``'s params module."""
    return path.startswith(Path(OWN_PARAMS[stage]).parent.as_posix() + "/")


def code_deps(stage: str) -> list[str]:
    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["deps"]
    return [d for d in deps if d.split("/")[0] in PACKAGES]


def covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("stage", STAGES)
def test_deps_cover_every_file_the_stage_runs(stage):
    missing = sorted(f for f in stage_files(stage) if not covered(f, code_deps(stage)))
    assert not missing, f"dvc.yaml stage {stage!r} runs these files but its deps do not list them: {missing}"


@pytest.mark.parametrize("stage", STAGES)
def test_every_dep_is_needed(stage):
    """Removing any code dep from the list leaves a file the stage runs uncovered."""
    deps, files = code_deps(stage), stage_files(stage)
    for dep in deps:
        rest = [d for d in deps if d != dep]
        assert any(covered(f, [dep]) and not covered(f, rest) for f in files), (
            f"dvc.yaml stage {stage!r}: dep {dep!r} covers no file the stage runs that another dep does not")


def test_a_removed_folder_is_caught():
    """The check itself can fail: without its package folder, curate's deps miss its filters."""
    deps = [d for d in code_deps("curate") if d.rstrip("/") != "ray_tasks/curate"]
    assert any(not covered(f, deps) for f in stage_files("curate"))
    assert "ray_tasks/curate/filters.py" in stage_files("curate")


def test_imports_are_found_inside_functions_too():
    """Lazy imports (inside functions) run as surely as module-level ones."""
    assert "ray_tasks/tables.py" in stage_files("ingest")
    assert "flows/plots.py" in stage_files("curate")  # imported inside publish_plots
