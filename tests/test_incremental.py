"""Issue 16, acceptance item 1 at the scale of a test: a directory source grown by new repositories,
re-run with real ``starflow stage`` processes, computes only what is new in every data stage
(counts from each stage's ``last_run.json``) and gives, byte for byte, the outputs of a full run on
all repositories in a fresh workspace.

The corpus: repositories of generated code, each with an MIT ``LICENSE``; ingest groups of about
three repositories (``batch_bytes``), so that the new repositories land in groups with old ones, as
new repositories of a real source do. One new repository, ``a-fork``, holds an exact copy of a file
of ``r01`` and sorts first by name, so dedup keeps the new copy and the old one is superseded:
``r01``'s kept rows change (and ``r00``'s: its LICENSE was the kept copy of the text every
repository has) and curate recomputes those repositories too. The cost side (at most 25%
of a full run's time) is measured at 120 MB by ``benchmarks/incremental.py``, not timed here.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.paths import ROOT
from tests.test_resume import _code, _env  # the generated code and the stage processes' environment
from tests.workspaces import make_workspace

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
OLD = [f"r{i:02d}" for i in range(12)]
NEW = ["a-fork", "r05x"]
PARAMS = yaml.safe_load((ROOT / "params.tiny.yaml").read_text())
PARAMS["ingest"] = {"sources": [{"kind": "directory", "path": "corpus"}], "batch_bytes": 90_000,
                    "row_group_bytes": 60_000}
PARAMS["ray"] = {"executor": "local"}
MIT = """MIT License

Copyright (c) 2026 The Authors

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES
OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN
CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""


def _repos() -> dict[str, dict[str, str]]:
    """Every repository's files, old and new (the same bytes in every workspace)."""
    rng = random.Random(16)
    trees = {name: {f"src/m{j:02d}.py": _code(rng, 60) for j in range(8)} for name in OLD + NEW}
    trees["r07"].update({f"vendor/{k}": v for k, v in list(trees["r02"].items())[:3]})  # exact copies, old
    trees["r05x"].update({k: v.replace("+ 1", "+ 2", 2) for k, v in list(trees["r05"].items())[:4]})  # near copies
    trees["a-fork"]["src/m00.py"] = trees["r01"]["src/m00.py"]  # a better-named copy of an old file
    for tree in trees.values():
        tree["LICENSE"] = MIT
    return trees


def _write(root: Path, names: list[str]) -> None:
    trees = _repos()
    for name in names:
        for rel, text in trees[name].items():
            (root / name / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / name / rel).write_text(text)


def _workspace(ws: Path, names: list[str]) -> Path:
    ws.mkdir()
    make_workspace(ws, PARAMS, _env(ws))
    _write(ws / "corpus", names)
    return ws


def _stages(ws: Path) -> None:
    proc = subprocess.run([str(BIN / "starflow"), "stage", "ingest", "dedup", "curate"], cwd=ws, env=_env(ws),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"stages failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"


def _last_run(ws: Path, stage: str) -> dict:
    found = sorted((ws / ".starflow").rglob("last_run.json"))
    mine = [p for p in found if stage in p.relative_to(ws / ".starflow").parts]
    assert mine, f"no last_run.json of {stage} under {ws / '.starflow'}: {found}"
    return json.loads(mine[0].read_text())


def _outputs(ws: Path) -> dict[str, bytes]:
    files = [p for s in ("ingest", "dedup", "curate") for p in sorted((ws / "data" / s).rglob("*")) if p.is_file()]
    files += [ws / "metrics" / f"{s}.json" for s in ("ingest", "dedup", "curate")]
    return {p.relative_to(ws).as_posix(): p.read_bytes() for p in files}


def test_new_repositories_are_all_that_a_rerun_computes_and_it_equals_a_full_run(tmp_path):
    grown = _workspace(tmp_path / "grown", OLD)
    _stages(grown)
    first = {s: _last_run(grown, s) for s in ("ingest", "dedup", "curate")}
    assert first["ingest"]["repositories_computed"] == first["curate"]["repositories_computed"] == len(OLD)
    _write(grown / "corpus", NEW)
    _stages(grown)
    again = {s: _last_run(grown, s) for s in ("ingest", "dedup", "curate")}

    new_files = sum(len(t) for n, t in _repos().items() if n in NEW)
    assert again["ingest"]["repositories_computed"] == len(NEW)
    assert again["ingest"]["repositories_reused"] == len(OLD)
    # Signatures: only contents never seen before (a-fork's copy of r01's file is not one).
    assert 0 < again["dedup"]["signatures_computed"] < new_files
    assert again["dedup"]["signatures_from_cache"] >= first["dedup"]["signatures_computed"] - 1
    # Curate: the new repositories, and the two old ones whose kept files a-fork's copies supersede:
    # r01 (its m00.py) and r00 (its LICENSE, every repository's same MIT text, kept from r00 until
    # a-fork sorted first); whole parts that did not change are taken as they are.
    assert again["curate"]["repositories_computed"] == len(NEW) + 2
    assert again["curate"]["repositories_reused"] == len(OLD) - 2
    assert again["curate"]["parts"] == again["ingest"]["groups"] > again["curate"]["parts_computed"] > 0
    superseded = json.loads((grown / "metrics" / "dedup.json").read_text())
    assert superseded["files_in"] == sum(len(t) for t in _repos().values())

    full = _workspace(tmp_path / "full", OLD + NEW)
    _stages(full)
    assert _last_run(full, "ingest")["repositories_computed"] == len(OLD) + len(NEW)
    ours, theirs = _outputs(grown), _outputs(full)
    assert sorted(ours) == sorted(theirs)
    assert [name for name in ours if ours[name] != theirs[name]] == []
