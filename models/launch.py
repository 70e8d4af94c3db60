"""Launching ``models.train`` as several data-parallel processes.

In-process training (one rank) is the laptop default. With ``num_processes > 1``
the train stage launches that many ranks: with torchrun on this machine, or with
Ray Train's ``TorchTrainer`` on the Ray cluster when ``ray.address`` is set.
Multi-node runs without Ray use the same entry point under the ``deepspeed``
launcher with a hostfile (see infra/README.md).
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


def launch_ray(cfg: TrainConfig, num_workers: int, use_gpu: bool = False, storage_path: str | None = None) -> TrainResult:
    """Run ``train`` on ``num_workers`` Ray Train workers (Ray must be initialised).

    Ray Train sets up torch.distributed for the workers; DeepSpeed joins that group. Paths are
    made absolute because workers may run elsewhere (on a cluster they must be on shared storage).
    """
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    conf = asdict(cfg)
    for key in ("shards_dir", "tokenizer_dir", "work_dir", "init_from"):
        if conf.get(key):
            conf[key] = str(Path(conf[key]).resolve())
    trainer = TorchTrainer(
        _ray_worker_loop,
        train_loop_config=conf,
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu),
        run_config=RunConfig(storage_path=storage_path or str(Path(conf["work_dir"]).parent / "ray_results")),
    )
    result_path = Path(conf["work_dir"]).parent / f"{Path(conf['work_dir']).name}.result.json"
    result_path.unlink(missing_ok=True)
    trainer.fit()
    return TrainResult(**json.loads(result_path.read_text()))


def _ray_worker_loop(conf: dict) -> None:
    import ray.train
    import torch.distributed as dist

    from models.presets import ModelShape
    from models.train import train

    conf = dict(conf, model=ModelShape(**conf["model"]))
    result = train(TrainConfig(**conf))
    if dist.get_rank() == 0:  # rank 0's result, through the (shared) work-dir parent
        work = Path(conf["work_dir"])
        (work.parent / f"{work.name}.result.json").write_text(json.dumps(asdict(result)))
    ray.train.report({"val_loss": result.val_loss_after})
