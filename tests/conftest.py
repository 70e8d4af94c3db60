"""Shared fixtures: one Ray, one Prefect test harness, a tiny corpus of repositories."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

# A developer's running `starflow server` must not capture the suite (flows/servers.py).
os.environ.setdefault("STARFLOW_NO_SERVERS", "1")

import flows  # noqa: F401,E402  (embedded-default environment, before Prefect loads)

MIT = """MIT License

Copyright (c) 2024 Example

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT.
"""

GPL = """                    GNU GENERAL PUBLIC LICENSE
                       Version 3, 29 June 2007
"""


def _module(name: str, n: int) -> str:
    funcs = "\n\n".join(
        textwrap.dedent(
            f'''
            def {name}_{i}(values, scale={i + 1}):
                """Return the scaled sum of the values for case {i}."""
                total = 0
                for value in values:
                    total += value * scale
                return total
            '''
        ).strip()
        for i in range(n)
    )
    return f'"""Module {name}."""\n\n{funcs}\n'


def make_corpus(root: Path, n_repos: int = 6, files_per_repo: int = 5) -> Path:
    """Repositories of generated Python with licenses, a duplicate, and bad files of each kind."""
    root.mkdir(parents=True, exist_ok=True)
    for r in range(n_repos):
        repo = root / f"repo{r}"
        (repo / "pkg").mkdir(parents=True)
        (repo / "LICENSE").write_text(MIT if r % 3 else "Apache License, Version 2.0\n")
        for f in range(files_per_repo):
            (repo / "pkg" / f"mod{f}.py").write_text(_module(f"r{r}f{f}", 6 + f))
        (repo / "pkg" / "shared.py").write_text(_module("shared", 4))  # exact duplicate across repos
    gpl = root / "copyleft"
    (gpl / "src").mkdir(parents=True)
    (gpl / "COPYING").write_text(GPL)
    (gpl / "src" / "main.py").write_text(_module("gpl", 5))
    bad = root / "repo0"
    (bad / "blob.bin").write_bytes(b"\x00\x01\x02binary")
    (bad / "latin1.py").write_bytes("caf\xe9 = 1\n".encode("latin-1"))
    (bad / "minified.js").write_text("var a=" + "1+" * 3000 + "1;\n")
    (bad / "data.py").write_text("X = [\n" + "    0, 1, 2, 3, 4, 5, 6, 7, 8, 9,\n" * 40 + "]\n")
    return root


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def ray_session():
    import ray

    from ray_tasks.executor import RayParams, init_ray

    init_ray(RayParams(num_cpus=2, object_store_memory_mb=256))
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(autouse=True)
def _no_parent_run(monkeypatch):
    monkeypatch.delenv("STARFLOW_MLFLOW_PARENT_RUN_ID", raising=False)
    # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI; setting it first makes monkeypatch record
    # it, so a URI one test sets is undone before the next.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(autouse=True)
def _no_inherited_rendezvous():
    """A test that trains in this process leaves a 1-rank torch.distributed group behind (its
    TCPStore still listening) and RANK/MASTER_PORT in os.environ (models/distributed.py): a later
    test's subprocess (`starflow serve`, `starflow run`) would inherit that port and fail with
    EADDRINUSE. The variables go after each test; the group itself stays for in-process reuse."""
    # models.distributed.RENDEZVOUS_ENV, named here: importing it would import torch for every test
    before = {k: os.environ.get(k) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    yield
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
