"""Training a StarCoder2 model with DeepSpeed, on CPU or GPU.

Single process (what the train stage does by default; rendezvous env vars are
set here when no launcher did):

    starflow stage train

Several processes or nodes: the same entry point under a launcher, which sets
RANK/WORLD_SIZE/MASTER_ADDR and the rest:

    deepspeed --num_gpus 8 --module models.train --config run_config.json   # CPU: --num_accelerators 2
    torchrun --nproc_per_node 2 -m models.train --config run_config.json

The loop reads top-down: build model -> deepspeed.initialize -> (resume) ->
steps with periodic validation and checkpoints -> export to HF format.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from models.data import TokenShards, random_batch, sequential_batches
from models.presets import ModelShape, starcoder2_config

log = logging.getLogger(__name__)

MetricsCallback = Callable[[int, dict[str, float]], None]


@dataclass
class TrainConfig:
    """Everything one training run needs; written beside its checkpoints as run_config.json."""

    shards_dir: str
    tokenizer_dir: str
    work_dir: str
    """Checkpoints go here while training; a rerun with the same config resumes from them."""
    model: ModelShape
    data_stage: str = "stage1"
    """Which shard length to train on: ``stage1`` (base) or ``stage2`` (long context)."""
    init_from: str | None = None
    """An HF model folder whose weights start this run (stage 2 starts from stage 1's export)."""
    zero_stage: int = 1
    dtype: str = "fp32"
    micro_batch_size: int = 8
    grad_accum_steps: int = 1
    max_steps: int = 300
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 30
    weight_decay: float = 0.1
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    grad_clip: float = 1.0
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, ~30% more compute)."""
    eval_every: int = 50
    eval_batches: int = 16
    checkpoint_every: int = 100
    seed: int = 0
    torch_threads: int | None = None
    peak_flops: float | None = None
    """Peak FLOP/s of one device, for the MFU estimate (None: MFU not reported)."""
    extra_ds_config: dict = field(default_factory=dict)

    def fingerprint(self) -> str:
        """What must match for a checkpoint in work_dir to be resumable: this config and the same data.

        The shard manifest carries a hash of every split's token stream, so new data never
        resumes from a checkpoint trained on old data.
        """
        d = asdict(self)
        d.pop("work_dir")
        if self.init_from:
            weights = Path(self.init_from) / "model.safetensors"
            d["init_weights"] = hashlib.sha256(weights.read_bytes()).hexdigest() if weights.exists() else None
        manifest = Path(self.shards_dir) / "manifest.json"
        d["data"] = hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.exists() else None
        return json.dumps(d, sort_keys=True, default=str)


@dataclass
class TrainResult:
    steps: int
    resumed_from_step: int
    tokens_seen: int
    val_loss_before: float
    val_loss_after: float
    train_loss_last: float | None
    """None when a resumed run had no step left to run."""
    seconds: float
    tokens_per_second: float
    num_parameters: int
    checkpoint_dir: str
    checkpoint_tag: str
    history: list[dict[str, float]]
    mfu: float | None = None


def deepspeed_config(cfg: TrainConfig) -> dict:
    conf = {
        "train_micro_batch_size_per_gpu": cfg.micro_batch_size,
        "gradient_accumulation_steps": cfg.grad_accum_steps,
        "gradient_clipping": cfg.grad_clip,
        "zero_optimization": {"stage": cfg.zero_stage},
        "bf16": {"enabled": cfg.dtype == "bf16"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    conf.update(cfg.extra_ds_config)
    return conf


def train(cfg: TrainConfig, on_metrics: MetricsCallback | None = None) -> TrainResult:
    import deepspeed
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    _init_distributed(deepspeed)
    rank, world = torch.distributed.get_rank(), _world_size()
    shards = TokenShards(cfg.shards_dir, cfg.data_stage)
    train_arr, val_arr = shards.split("train"), shards.split("val")

    torch.manual_seed(cfg.seed)
    model = build_model(cfg, shards.vocab_size)
    num_params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps,
        weight_decay=cfg.weight_decay,
    )
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, cfg.warmup_steps, cfg.max_steps, min_lr_rate=cfg.min_lr_ratio
    )
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(cfg)
    )

    work = Path(cfg.work_dir)
    start_step = _maybe_resume(engine, work, cfg)
    history = _load_history(work, start_step)
    report = _reporter(history, work / "history.jsonl", on_metrics, rank == 0)

    if start_step == 0:
        report(0, {"val_loss": evaluate_loss(engine, val_arr, cfg.micro_batch_size, cfg.eval_batches)})

    t0 = time.perf_counter()
    loss_value: float | None = None
    tokens_per_step = cfg.micro_batch_size * cfg.grad_accum_steps * shards.seq_len * world
    step = start_step
    progress = _progress(rank == 0, cfg.max_steps, start_step)
    for step in range(start_step + 1, cfg.max_steps + 1):
        engine.train()
        t_step = time.perf_counter()
        losses = []
        for micro in range(cfg.grad_accum_steps):
            batch = random_batch(train_arr, cfg.micro_batch_size, cfg.seed, step * cfg.grad_accum_steps + micro, rank, world)
            batch = batch.to(engine.device)
            loss = engine(input_ids=batch, labels=batch).loss
            engine.backward(loss)
            engine.step()
            losses.append(loss.detach())
        loss_value = _global_mean(torch.stack(losses).mean())
        metrics = {"train_loss": loss_value, "lr": scheduler.get_last_lr()[0],
                   "tokens_per_second": tokens_per_step / (time.perf_counter() - t_step)}
        grad_norm = engine.get_global_grad_norm()
        if grad_norm is not None:
            metrics["grad_norm"] = float(grad_norm)
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            metrics["val_loss"] = evaluate_loss(engine, val_arr, cfg.micro_batch_size, cfg.eval_batches)
        report(step, metrics)
        progress.update(step, metrics)
        if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
            _save(engine, work, cfg, step)
    seconds = time.perf_counter() - t0
    progress.close()

    steps_run = max(0, step - start_step)
    tps = steps_run * tokens_per_step / seconds if seconds > 0 and steps_run else 0.0
    vals = [h["val_loss"] for h in history if "val_loss" in h]
    return TrainResult(
        steps=cfg.max_steps,
        resumed_from_step=start_step,
        tokens_seen=cfg.max_steps * tokens_per_step,
        val_loss_before=vals[0] if vals else float("nan"),
        val_loss_after=vals[-1] if vals else float("nan"),
        train_loss_last=loss_value,
        seconds=seconds,
        tokens_per_second=tps,
        num_parameters=num_params,
        checkpoint_dir=str(work),
        checkpoint_tag=f"step{cfg.max_steps}",
        history=history,
        mfu=mfu(num_params, cfg.model, shards.seq_len, tps / world, cfg.peak_flops) if tps else None,
    )


def build_model(cfg: TrainConfig, vocab_size: int):
    """A fresh StarCoder2 model, or one starting from ``init_from``'s weights with this config's shape
    (stage 2: same weights, longer context and a larger RoPE theta)."""
    from transformers import Starcoder2ForCausalLM

    model = Starcoder2ForCausalLM(starcoder2_config(cfg.model, vocab_size))
    if cfg.init_from:
        from safetensors.torch import load_file

        state = load_file(str(Path(cfg.init_from) / "model.safetensors"))
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not (cfg.model.tie_word_embeddings and k == "lm_head.weight")]
        if missing or unexpected:
            raise RuntimeError(f"{cfg.init_from}: weights do not fit the model: missing {missing}, unexpected {unexpected}")
        model.tie_weights()
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model


def mfu(num_params: int, shape: ModelShape, seq_len: int, tokens_per_second_per_device: float,
        peak_flops: float | None) -> float | None:
    """Model FLOPs utilisation: (6N + 12·L·H·T) FLOPs per token (PaLM appendix B) over the device peak."""
    if not peak_flops:
        return None
    attention = 12 * shape.num_hidden_layers * shape.hidden_size * min(seq_len, shape.sliding_window or seq_len)
    return (6 * num_params + attention) * tokens_per_second_per_device / peak_flops


@torch.no_grad()
def evaluate_loss(engine, arr, batch_size: int, max_batches: int) -> float:
    """Mean next-token loss over the first ``max_batches`` validation batches."""
    engine.eval()
    losses = [engine(input_ids=b.to(engine.device), labels=b.to(engine.device)).loss.item()
              for b in sequential_batches(arr, batch_size, max_batches)]
    return float(sum(losses) / len(losses))


def export_hf(cfg: TrainConfig, checkpoint_tag: str, out_dir: str | Path) -> Path:
    """Consolidate the (possibly ZeRO-sharded) checkpoint into an HF ``save_pretrained`` folder."""
    import shutil

    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    from transformers import Starcoder2ForCausalLM

    shards = TokenShards(cfg.shards_dir, cfg.data_stage)
    model = Starcoder2ForCausalLM(starcoder2_config(cfg.model, shards.vocab_size))
    state = get_fp32_state_dict_from_zero_checkpoint(cfg.work_dir, tag=checkpoint_tag)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (cfg.model.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"checkpoint does not match the model: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    out = Path(out_dir)
    model.save_pretrained(out, safe_serialization=True)
    for f in Path(cfg.tokenizer_dir).iterdir():
        shutil.copy2(f, out / f.name)
    return out


# --------------------------------------------------------------------------- helpers
def _init_distributed(deepspeed) -> None:
    """Join the process group a launcher (torchrun, deepspeed, Ray Train) set up, or make a 1-rank one."""
    if torch.distributed.is_initialized():
        return
    if "RANK" not in os.environ:
        os.environ.update(
            {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
             "MASTER_PORT": str(_free_port())}
        )
    from deepspeed.accelerator import get_accelerator

    deepspeed.init_distributed(dist_backend=get_accelerator().communication_backend_name())


def _world_size() -> int:
    return torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _maybe_resume(engine, work: Path, cfg: TrainConfig) -> int:
    marker = work / "run_config.json"
    tag = _resume_tag(work)
    if tag and marker.exists() and marker.read_text() == cfg.fingerprint():
        _, client = engine.load_checkpoint(str(work), tag=tag)
        step = int(client["step"])
        torch.set_rng_state(client["torch_rng"])
        log.info("resumed from %s at step %d", work, step)
        return step
    if torch.distributed.get_rank() == 0:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        marker.write_text(cfg.fingerprint())
        (work / "ds_config.json").write_text(json.dumps(deepspeed_config(cfg), indent=2))
    torch.distributed.barrier()
    return 0


def _save(engine, work: Path, cfg: TrainConfig, step: int) -> None:
    """Every rank must call save_checkpoint (rank-0-only hangs under ZeRO). DeepSpeed writes the
    ``latest`` pointer only after the tag folder is complete, so a kill mid-save leaves ``latest``
    on the previous checkpoint; the data position is the step (batches are a function of it)."""
    engine.save_checkpoint(str(work), tag=f"step{step}", client_state={"step": step, "torch_rng": torch.get_rng_state()})


def _resume_tag(work: Path) -> str | None:
    """The newest complete checkpoint: ``latest`` if its files are all there, else the newest
    ``stepN`` folder that is (a save killed half-way is skipped, never loaded)."""
    latest = work / "latest"
    candidates = [latest.read_text().strip()] if latest.exists() else []
    steps = sorted((p.name for p in work.glob("step*") if p.name[4:].isdigit()), key=lambda n: -int(n[4:]))
    for tag in candidates + steps:
        folder = work / tag
        if any(folder.glob("*model_states.pt")) and any(folder.glob("*optim_states.pt")):
            return tag
    return None


def _load_history(work: Path, start_step: int) -> list[dict[str, float]]:
    """Metrics logged before the checkpoint we resumed from (later lines belong to lost steps)."""
    path = work / "history.jsonl"
    if not start_step or not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["step"] <= start_step]


def _global_mean(value: torch.Tensor) -> float:
    """The loss averaged over ranks, so 1 and N processes report the same number for the same batch."""
    value = value.float().clone()
    if _world_size() > 1:
        torch.distributed.all_reduce(value)
        value /= _world_size()
    return value.item()


class _progress:
    """A tqdm bar on rank 0 showing the latest losses; silent on other ranks."""

    def __init__(self, enabled: bool, total: int, start: int):
        from tqdm.auto import tqdm

        import sys

        # Redraw rarely when logging to a file: every redraw is a new chunk of log.
        interval = 0.5 if sys.stderr.isatty() else 30.0
        self.bar = tqdm(total=total, initial=start, desc="train", unit="step", disable=not enabled,
                        mininterval=interval)
        self.postfix: dict[str, str] = {}

    def update(self, step: int, metrics: dict[str, float]) -> None:
        self.postfix.update({k: f"{v:.3f}" for k, v in metrics.items() if k.endswith("loss")})
        self.bar.set_postfix(self.postfix, refresh=False)
        self.bar.update(step - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def _reporter(history: list[dict[str, float]], path: Path, callback: MetricsCallback | None, is_rank0: bool):
    """Record metrics in memory and in ``history.jsonl`` (rank 0), rewritten to match a resume point."""
    if is_rank0:
        path.write_text("".join(json.dumps(h) + "\n" for h in history))

    def report(step: int, metrics: dict[str, float]) -> None:
        if not all(math.isfinite(v) for v in metrics.values()):
            raise FloatingPointError(f"non-finite metrics at step {step}: {metrics}")
        history.append({"step": step, **metrics})
        if not is_rank0:
            return
        with path.open("a") as fh:
            fh.write(json.dumps({"step": step, **metrics}) + "\n")
        if callback:
            callback(step, metrics)
        if "val_loss" in metrics:
            log.info("step %d %s", step, " ".join(f"{k}={v:.4g}" for k, v in metrics.items()))

    return report


def main() -> None:
    """Launcher entry point: ``-m models.train --config run_config.json [--export DIR]``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="TrainConfig as JSON")
    parser.add_argument("--result", help="write the TrainResult JSON here (rank 0)")
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    raw = json.loads(Path(args.config).read_text())
    raw["model"] = ModelShape(**raw["model"])
    result = train(TrainConfig(**raw))
    if args.result and torch.distributed.get_rank() == 0:
        Path(args.result).write_text(json.dumps(asdict(result), indent=2))


if __name__ == "__main__":
    main()
