"""Stage ``train``: a StarCoder2 model trained with DeepSpeed on the packed shards, exported to HF format.

The runs (stage 1, then stage 2 from stage 1's weights) are built from ``params.train`` by
``models/run.py``; this flow runs them in-process, with torchrun or with Ray Train
(``models/launch.py``), logs them to MLflow and writes the stage's outputs.
"""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import mlflow
from prefect import flow, get_run_logger

from flows import plots, tracking
from flows.config import Params
from flows.workspace import WORK, metrics_file, stage_dir
from models.data import TokenShards
from models.launch import launch, launch_ray
from models.perplexity import eval_window_bytes, token_bytes
from models.run import TrainRun, deepspeed_config, stage_runs
from models.train import TrainResult, export_hf, train
from ray_tasks.evaluate.compressors import compressed_bits_per_byte
from ray_tasks.executor import init_ray
from ray_tasks.tables import AtomicDir


@flow(name="stage-train")
def train_flow(params: Params, parent_run_id: str | None = None) -> dict:
    log = get_run_logger()
    runs = stage_runs(params.train, stage_dir("tokenize"), WORK / "train", params.tokenize.seq_len_stage2)
    stats: dict = {}
    history: list[dict] = []
    with tracking.stage_run("train", params, parent_run_id, log_system_metrics=True) as mlflow_run:
        offset = 0
        for i, run in enumerate(runs, start=1):
            name = f"stage{i}"
            mlflow.log_dict(run.model_dump(mode="json"), f"{name}/train_config.json")
            mlflow.log_dict(deepspeed_config(run), f"{name}/ds_config.json")
            result = _run_stage(run, params.train.num_processes, offset, ray_cluster=_join_ray_cluster(params))
            history += [{**h, "step": h["step"] + offset, "stage": i} for h in result.history]
            stats[name] = {k: v for k, v in asdict(result).items() if k not in {"history", "checkpoint_dir"}}
            stats[name]["val_compressors"] = _compressors_on_eval_windows(run)
            mlflow.log_metrics({f"{name}.val_bits_per_byte.{k}": v for k, v in stats[name]["val_compressors"].items()})
            offset += run.hparams.max_steps
            if i < len(runs):
                export_hf(run, result.checkpoint_tag, WORK / "train" / "stage1_export.tmp")
                _replace_dir(WORK / "train" / "stage1_export.tmp", Path(runs[i].init_from))
        final = runs[-1]
        with AtomicDir(stage_dir("train")) as out:
            export_hf(final, result.checkpoint_tag, out / "model")
            _copy_checkpoint(Path(final.work_dir), result.checkpoint_tag, out / "checkpoint")
            for i, run in enumerate(runs, start=1):
                (out / f"ds_config.stage{i}.json").write_text(json.dumps(deepspeed_config(run), indent=2))
        _write_history(history, metrics_file("train_history").with_suffix(".csv"))
        vals = [h["val_loss"] for h in history if "val_loss" in h]
        bpb = [h["val_bits_per_byte"] for h in history if "val_bits_per_byte" in h]
        stats.update(
            steps=offset, val_loss_before=vals[0], val_loss_after=vals[-1], val_loss_drop=vals[0] - vals[-1],
            val_bits_per_byte_after=bpb[-1] if bpb else None,
            tokens_seen=sum(stats[f"stage{i}"]["tokens_seen"] for i in range(1, len(runs) + 1)),
            num_parameters=stats["stage1"]["num_parameters"], mlflow_run_id=mlflow_run.info.run_id,
        )
        tracking.publish_metrics("train", stats)
        with tempfile.TemporaryDirectory() as tmp:
            floors = {i: stats[f"stage{i}"]["val_compressors"] for i in range(1, len(runs) + 1)}
            mlflow.log_artifact(str(plots.loss_curve(history, Path(tmp) / "loss_curve.png", floors)))
        log.info("train: val loss %.3f -> %.3f in %d steps", vals[0], vals[-1], offset)
    return stats


def _compressors_on_eval_windows(run: TrainRun) -> dict[str, float]:
    """gzip, bzip2, xz and zstd on the bytes the run validates on: the floor its validation bits per
    byte is drawn against (``val_bits_per_byte`` in the history is on exactly these bytes)."""
    hp = run.hparams
    val = TokenShards(run.shards_dir, run.data_stage).split("val")
    data, _ = eval_window_bytes(val, hp.micro_batch_size, hp.eval_batches, token_bytes(run.tokenizer_dir))
    return compressed_bits_per_byte(data)


def _run_stage(run: TrainRun, num_processes: int, offset: int, ray_cluster: bool = False) -> TrainResult:
    def on_metrics(step: int, metrics: dict[str, float]) -> None:
        mlflow.log_metrics(metrics, step=step + offset)

    if num_processes > 1:
        result = launch_ray(run, num_processes) if ray_cluster else launch(run, num_processes)
        for h in result.history:
            on_metrics(int(h["step"]), {k: v for k, v in h.items() if k != "step"})
        return result
    return train(run, on_metrics)


def _join_ray_cluster(params: Params) -> bool:
    """Multi-process training goes through Ray Train when a Ray cluster is configured (``ray.address``);
    otherwise torchrun on this machine, and Ray is not started."""
    if not params.ray.address or params.train.num_processes <= 1:
        return False
    init_ray(params.ray)
    return True


def _replace_dir(src: Path, dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    src.rename(dest)


def _copy_checkpoint(work: Path, tag: str, dest: Path) -> None:
    """Keep the final DeepSpeed checkpoint (for continued training) beside the HF export."""
    dest.mkdir(parents=True)
    shutil.copytree(work / tag, dest / tag)
    (dest / "latest").write_text(tag)
    for f in ("run_config.json", "zero_to_fp32.py"):
        if (work / f).exists():
            shutil.copy2(work / f, dest / f)


def _write_history(history: list[dict[str, float]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = ["step", "stage", "train_loss", "val_loss", "val_bits_per_byte", "lr", "grad_norm", "tokens_per_second"]
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
    tmp.replace(path)
