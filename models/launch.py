"""Launching ``models.train`` as several processes (data parallel) with torchrun.

In-process training (one rank) is the laptop default. With ``num_processes > 1``
the train stage launches this many local ranks; multi-node runs use the same
entry point under the ``deepspeed`` launcher with a hostfile (see infra/README.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from models.train import TrainConfig, TrainResult


def launch(cfg: TrainConfig, num_processes: int, threads_per_process: int = 1) -> TrainResult:
    work = Path(cfg.work_dir)
    work.parent.mkdir(parents=True, exist_ok=True)
    cfg_path = work.parent / f"{work.name}.launch.json"
    result_path = work.parent / f"{work.name}.result.json"
    cfg_path.write_text(json.dumps(asdict(cfg)))
    result_path.unlink(missing_ok=True)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={num_processes}",
        "-m", "models.train", "--config", str(cfg_path), "--result", str(result_path),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads_per_process)}
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    proc = subprocess.run(cmd, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"distributed training failed (exit {proc.returncode}): {' '.join(cmd)}")
    return TrainResult(**json.loads(result_path.read_text()))
