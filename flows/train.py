"""Stage ``train``: a StarCoder2 model trained with DeepSpeed on the packed shards, exported to HF format."""

from __future__ import annotations

import csv
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import mlflow
from prefect import flow, get_run_logger

from flows import plots, tracking
from flows.config import Params
from flows.workspace import WORK, metrics_file, stage_dir
from models.launch import launch
from models.presets import ModelShape
from models.train import TrainConfig, export_hf, train
from ray_tasks.tables import AtomicDir


def train_config(params: Params) -> TrainConfig:
    p = params.train
    shards = stage_dir("tokenize")
    return TrainConfig(
        shards_dir=str(shards),
        tokenizer_dir=str(shards / "tokenizer"),
        work_dir=str(WORK / "train"),
        model=ModelShape(**p.model.model_dump()),
        **p.model_dump(exclude={"model", "num_processes"}),
    )


@flow(name="stage-train")
def train_flow(params: Params, parent_run_id: str | None = None) -> dict:
    log = get_run_logger()
    cfg = train_config(params)
    with tracking.stage_run("train", params, parent_run_id) as run:
        mlflow.log_dict(asdict(cfg), "train_config.json")

        def on_metrics(step: int, metrics: dict[str, float]) -> None:
            mlflow.log_metrics(metrics, step=step)

        if params.train.num_processes > 1:
            result = launch(cfg, params.train.num_processes)
            for h in result.history:
                on_metrics(int(h["step"]), {k: v for k, v in h.items() if k != "step"})
        else:
            result = train(cfg, on_metrics)
        with AtomicDir(stage_dir("train")) as out:
            export_hf(cfg, result.checkpoint_tag, out / "model")
            _copy_checkpoint(Path(cfg.work_dir), result.checkpoint_tag, out / "checkpoint")
        _write_history(result.history, metrics_file("train_history").with_suffix(".csv"))
        stats = {k: v for k, v in asdict(result).items() if k not in {"history", "checkpoint_dir"}}
        stats["val_loss_drop"] = result.val_loss_before - result.val_loss_after
        stats["mlflow_run_id"] = run.info.run_id
        tracking.publish_metrics("train", stats)
        with tempfile.TemporaryDirectory() as tmp:
            mlflow.log_artifact(str(plots.loss_curve(result.history, Path(tmp) / "loss_curve.png")))
        log.info("train: val loss %.3f -> %.3f in %d steps", result.val_loss_before, result.val_loss_after, result.steps)
    return stats


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
    fields = ["step", "train_loss", "val_loss", "lr"]
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
    tmp.replace(path)
