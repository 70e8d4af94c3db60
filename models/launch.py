"""Launching ``models.train`` as several data-parallel processes.

In-process training (one rank) is the laptop default. With ``num_processes > 1``
the train stage launches that many ranks: with torchrun on this machine, or with
Ray Train's ``TorchTrainer`` on the Ray cluster when ``ray.address`` is set. Each rank
then joins the group in models/distributed.py. Multi-node runs without Ray use the same
entry point under the ``deepspeed`` launcher with a hostfile (see infra/README.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from models.distributed import launcher_free_env
from models.run import TrainRun
from models.train import TrainResult


def launch(run: TrainRun, num_processes: int, threads_per_process: int = 1) -> TrainResult:
    """``num_processes`` ranks on this machine with torchrun; the run goes to them as a JSON file."""
    run_path, result_path = _beside_work_dir(run, ".launch.json"), _beside_work_dir(run, ".result.json")
    run_path.parent.mkdir(parents=True, exist_ok=True)
    run_path.write_text(run.model_dump_json())
    result_path.unlink(missing_ok=True)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={num_processes}",
        "-m", "models.train", "--config", str(run_path), "--result", str(result_path),
    ]
    proc = subprocess.run(cmd, env={**launcher_free_env(), "OMP_NUM_THREADS": str(threads_per_process)})
    if proc.returncode != 0:
        raise RuntimeError(f"distributed training failed (exit {proc.returncode}): {' '.join(cmd)}")
    return TrainResult(**json.loads(result_path.read_text()))


def launch_ray(run: TrainRun, num_workers: int, use_gpu: bool = False, storage_path: str | None = None) -> TrainResult:
    """Run ``train`` on ``num_workers`` Ray Train workers (Ray must be initialised).

    Ray Train sets up torch.distributed for the workers; DeepSpeed joins that group. Paths are
    made absolute because workers may run elsewhere (on a cluster they must be on shared storage).
    """
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    run = run.with_absolute_paths()
    trainer = TorchTrainer(
        _ray_worker_loop,
        train_loop_config=run.model_dump(mode="json"),
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu),
        run_config=RunConfig(storage_path=storage_path or str(Path(run.work_dir).parent / "ray_results")),
    )
    result_path = _beside_work_dir(run, ".result.json")
    result_path.unlink(missing_ok=True)
    trainer.fit()
    return TrainResult(**json.loads(result_path.read_text()))


def _ray_worker_loop(conf: dict) -> None:
    import ray.train

    from models import distributed
    from models.train import train

    run = TrainRun.model_validate(conf)
    result = train(run)
    if distributed.rank() == 0:  # rank 0's result, through the (shared) work-dir parent
        _beside_work_dir(run, ".result.json").write_text(json.dumps(asdict(result)))
    ray.train.report({"val_loss": result.val_loss_after})


def _beside_work_dir(run: TrainRun, suffix: str) -> Path:
    """``<work_dir><suffix>`` next to the work dir (which a fresh run empties)."""
    work = Path(run.work_dir)
    return work.parent / f"{work.name}{suffix}"
