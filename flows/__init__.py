"""Orchestration: Prefect flows per DAG stage, the pipeline flow, deployments and the CLI.

No business logic lives here: each stage flow reads its inputs, calls the steps
in ``ray_tasks``/``models``, writes its outputs atomically and publishes stats to
MLflow, Prefect artifacts and ``metrics/<stage>.json`` (what DVC tracks).
"""

import os as _os

# Embedded defaults for a laptop/CI run; any of them can be overridden from the environment.
for _key, _value in {
    # The ephemeral Prefect API takes 10-20 s to start on 2 cores; the default 20 s timeout is too tight.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "GIT_PYTHON_REFRESH": "quiet",
    "RAY_AUTH_MODE": "disabled",
    "DVC_NO_ANALYTICS": "1",
    "TOKENIZERS_PARALLELISM": "true",
}.items():
    _os.environ.setdefault(_key, _value)
