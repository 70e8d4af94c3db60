"""A scratch workspace for end-to-end tests: the files dvc.yaml's deps name, a params.yaml, `starflow init`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.paths import ROOT

BIN = Path(sys.executable).parent
CODE = ("dvc.yaml", "constraints.txt", "flows", "ray_tasks", "models")
"""What a workspace needs beside its params: the DAG and the code its stages' deps hash."""


def make_workspace(ws: Path, params: dict | Path, env: dict[str, str]) -> Path:
    """``ws`` made a StarFlow workspace (git, DVC, a local remote) with ``params`` as its params.yaml."""
    for item in CODE:
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, ws / item)
    text = params.read_text() if isinstance(params, Path) else yaml.safe_dump(params, sort_keys=False)
    (ws / "params.yaml").write_text(text)
    subprocess.run([str(BIN / "starflow"), "init"], cwd=ws, env=env, check=True, capture_output=True)
    return ws
