"""Stage ``train``: a StarCoder2 model trained with DeepSpeed on the packed shards, exported to HF format."""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import mlflow
from prefect import flow, get_run_logger

from flows import plots, tracking
from flows.config import Params
from flows.workspace import WORK, metrics_file, stage_dir
from models.launch import launch, launch_ray
from models.presets import resolve
from models.train import TrainConfig, TrainResult, deepspeed_config, export_hf, train
from ray_tasks.executor import init_ray
from ray_tasks.tables import AtomicDir


def train_configs(params: Params) -> list[TrainConfig]:
    """Stage 1 at the short context; stage 2 (when it has steps) continues from stage 1's weights
    at the long context with a larger RoPE theta and its own schedule. Each has its own work dir,
    so each resumes on its own."""
    p = params.train
    shards = stage_dir("tokenize")
    shape = resolve(p.model.preset, **p.model.overrides())
    stage1 = TrainConfig(
        shards_dir=str(shards),
        tokenizer_dir=str(shards / "tokenizer"),
        work_dir=str(WORK / "train" / "stage1"),
        model=shape,
        data_stage="stage1",
        **p.model_dump(exclude={"model", "num_processes", "stage2"}),
    )
    if not p.stage2.max_steps:
        return [stage1]
    s2 = p.stage2
    stage2 = replace(
        stage1,
        work_dir=str(WORK / "train" / "stage2"),
        data_stage="stage2",
        init_from=str(WORK / "train" / "stage1_export"),
        model=replace(shape, rope_theta=s2.rope_theta,
                      max_position_embeddings=max(shape.max_position_embeddings, params.tokenize.seq_len_stage2)),
        max_steps=s2.max_steps, lr=s2.lr, warmup_steps=s2.warmup_steps, micro_batch_size=s2.micro_batch_size,
        eval_every=s2.eval_every, checkpoint_every=s2.checkpoint_every,
    )
    return [stage1, stage2]


@flow(name="stage-train")
def train_flow(params: Params, parent_run_id: str | None = None) -> dict:
    log = get_run_logger()
    configs = train_configs(params)
    stats: dict = {}
    history: list[dict] = []
    with tracking.stage_run("train", params, parent_run_id, log_system_metrics=True) as run:
        offset = 0
        for i, cfg in enumerate(configs, start=1):
            name = f"stage{i}"
            mlflow.log_dict(asdict(cfg), f"{name}/train_config.json")
            mlflow.log_dict(deepspeed_config(cfg), f"{name}/ds_config.json")
            result = _run_stage(cfg, params.train.num_processes, offset, ray_cluster=_join_ray_cluster(params))
            history += [{**h, "step": h["step"] + offset, "stage": i} for h in result.history]
            stats[name] = {k: v for k, v in asdict(result).items() if k not in {"history", "checkpoint_dir"}}
            offset += cfg.max_steps
            if i < len(configs):
                export_hf(cfg, result.checkpoint_tag, WORK / "train" / "stage1_export.tmp")
                _replace_dir(WORK / "train" / "stage1_export.tmp", Path(configs[i].init_from))
        final = configs[-1]
        with AtomicDir(stage_dir("train")) as out:
            export_hf(final, result.checkpoint_tag, out / "model")
            _copy_checkpoint(Path(final.work_dir), result.checkpoint_tag, out / "checkpoint")
            for i, cfg in enumerate(configs, start=1):
                (out / f"ds_config.stage{i}.json").write_text(json.dumps(deepspeed_config(cfg), indent=2))
        _write_history(history, metrics_file("train_history").with_suffix(".csv"))
        vals = [h["val_loss"] for h in history if "val_loss" in h]
        stats.update(
            steps=offset, val_loss_before=vals[0], val_loss_after=vals[-1], val_loss_drop=vals[0] - vals[-1],
            tokens_seen=sum(stats[f"stage{i}"]["tokens_seen"] for i in range(1, len(configs) + 1)),
            num_parameters=stats["stage1"]["num_parameters"], mlflow_run_id=run.info.run_id,
        )
        tracking.publish_metrics("train", stats)
        with tempfile.TemporaryDirectory() as tmp:
            mlflow.log_artifact(str(plots.loss_curve(history, Path(tmp) / "loss_curve.png")))
        log.info("train: val loss %.3f -> %.3f in %d steps", vals[0], vals[-1], offset)
    return stats


def _run_stage(cfg: TrainConfig, num_processes: int, offset: int, ray_cluster: bool = False) -> TrainResult:
    def on_metrics(step: int, metrics: dict[str, float]) -> None:
        mlflow.log_metrics(metrics, step=step + offset)

    if num_processes > 1:
        result = launch_ray(cfg, num_processes) if ray_cluster else launch(cfg, num_processes)
        for h in result.history:
            on_metrics(int(h["step"]), {k: v for k, v in h.items() if k != "step"})
        return result
    return train(cfg, on_metrics)


def _join_ray_cluster(params: Params) -> bool:
    """Multi-process training goes through Ray Train when a Ray cluster is configured."""
    if not params.ray.address or params.train.num_processes <= 1:
        return False
    init_ray(params.ray.address, params.ray.num_cpus, params.ray.object_store_memory_mb)
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
    fields = ["step", "stage", "train_loss", "val_loss", "lr", "grad_norm", "tokens_per_second"]
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
    tmp.replace(path)
