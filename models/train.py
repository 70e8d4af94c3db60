"""Training a StarCoder2 model with DeepSpeed, on CPU or GPU: the training loop.

Single process (what the train stage does by default; models/distributed.py makes a group
of one when no launcher set one up):

    starflow stage train

Several processes or nodes: the same entry point under a launcher, which sets
RANK/WORLD_SIZE/MASTER_ADDR and the rest (models/launch.py starts torchrun or Ray Train):

    deepspeed --num_gpus 8 --module models.train --config run.json   # CPU: --num_accelerators 2
    torchrun --nproc_per_node 2 -m models.train --config run.json

``run.json`` is a ``TrainRun`` (models/run.py) as JSON. The loop reads top-down: build
model -> deepspeed.initialize -> (resume) -> steps with periodic validation and
checkpoints -> export to HF format.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from models import distributed
from models.data import TokenShards, mixed_batch, random_batch, sequential_batches
from models.params import ModelShape
from models.perplexity import eval_window_bytes, to_bits_per_byte, token_bytes
from models.presets import starcoder2_config
from models.run import TrainRun, deepspeed_config

log = logging.getLogger(__name__)

MetricsCallback = Callable[[int, dict[str, float]], None]


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


def train(run: TrainRun, on_metrics: MetricsCallback | None = None) -> TrainResult:
    import deepspeed
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    hp = run.hparams
    if hp.torch_threads:
        torch.set_num_threads(hp.torch_threads)
    distributed.init_process_group()
    rank, world = distributed.rank(), distributed.world_size()
    shards = TokenShards(run.shards_dir, run.data_stage)
    draw, val_arr = _batch_source(run, shards, rank, world), shards.split("val")

    torch.manual_seed(hp.seed)
    model = build_model(run, shards.vocab_size)
    num_params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=hp.lr, betas=(hp.adam_beta1, hp.adam_beta2), eps=hp.adam_eps,
        weight_decay=hp.weight_decay,
    )
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, hp.warmup_steps, hp.max_steps, min_lr_rate=hp.min_lr_ratio
    )
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(run)
    )

    work = Path(run.work_dir)
    start_step = _maybe_resume(engine, work, run)
    history = _load_history(work, start_step)
    report = _reporter(history, work / "history.jsonl", on_metrics, rank == 0)

    validate = _validator(engine, val_arr, run)
    if start_step == 0:
        report(0, validate())

    t0 = time.perf_counter()
    loss_value: float | None = None
    tokens_per_step = hp.micro_batch_size * hp.grad_accum_steps * shards.seq_len * world
    step = start_step
    progress = _progress(rank == 0, hp.max_steps, start_step)
    for step in range(start_step + 1, hp.max_steps + 1):
        engine.train()
        t_step = time.perf_counter()
        losses = []
        for micro in range(hp.grad_accum_steps):
            batch = draw(step * hp.grad_accum_steps + micro).to(engine.device)
            loss = engine(input_ids=batch, labels=batch).loss
            engine.backward(loss)
            engine.step()
            losses.append(loss.detach())
        loss_value = distributed.global_mean(torch.stack(losses).mean())
        metrics = {"train_loss": loss_value, "lr": scheduler.get_last_lr()[0],
                   "tokens_per_second": tokens_per_step / (time.perf_counter() - t_step)}
        grad_norm = engine.get_global_grad_norm()
        if grad_norm is not None:
            metrics["grad_norm"] = float(grad_norm)
        if step % hp.eval_every == 0 or step == hp.max_steps:
            metrics.update(validate())
        report(step, metrics)
        progress.update(step, metrics)
        if step % hp.checkpoint_every == 0 or step == hp.max_steps:
            _save(engine, work, step)
    seconds = time.perf_counter() - t0
    progress.close()

    steps_run = max(0, step - start_step)
    tps = steps_run * tokens_per_step / seconds if seconds > 0 and steps_run else 0.0
    vals = [h["val_loss"] for h in history if "val_loss" in h]
    return TrainResult(
        steps=hp.max_steps,
        resumed_from_step=start_step,
        tokens_seen=hp.max_steps * tokens_per_step,
        val_loss_before=vals[0] if vals else float("nan"),
        val_loss_after=vals[-1] if vals else float("nan"),
        train_loss_last=loss_value,
        seconds=seconds,
        tokens_per_second=tps,
        num_parameters=num_params,
        checkpoint_dir=str(work),
        checkpoint_tag=f"step{hp.max_steps}",
        history=history,
        mfu=mfu(num_params, run.shape, shards.seq_len, tps / world, hp.peak_flops) if tps else None,
    )


def _batch_source(run: TrainRun, shards: TokenShards, rank: int, world: int) -> Callable[[int], torch.Tensor]:
    """This rank's micro-batch for a micro-step number: uniform over the training shards, or for a
    continued run (``run.mix``) the new/old mix with ``replay_fraction`` of old rows."""
    hp = run.hparams
    if run.mix is None:
        train_arr = shards.split("train")
        return lambda i: random_batch(train_arr, hp.micro_batch_size, hp.seed, i, rank, world)
    new, old = shards.train_files(run.mix.new), shards.train_files(run.mix.old)
    return lambda i: mixed_batch(new, old, run.mix.replay_fraction, hp.micro_batch_size, hp.seed, i, rank, world)


def build_model(run: TrainRun, vocab_size: int):
    """A fresh StarCoder2 model, or one starting from ``init_from``'s weights with this run's shape
    (stage 2: same weights, longer context and a larger RoPE theta; a continued run: the parent
    model's weights, checked against the shape by models/continuation.py first)."""
    from transformers import Starcoder2ForCausalLM

    model = Starcoder2ForCausalLM(starcoder2_config(run.shape, vocab_size))
    if run.init_from:
        from safetensors.torch import load_file

        _load_weights(model, load_file(str(Path(run.init_from) / "model.safetensors")), run.shape,
                      f"{run.init_from}: weights do not fit the model")
    if run.hparams.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model


def mfu(num_params: int, shape: ModelShape, seq_len: int, tokens_per_second_per_device: float,
        peak_flops: float | None) -> float | None:
    """Model FLOPs utilisation: (6N + 12·L·H·T) FLOPs per token (PaLM appendix B) over the device peak."""
    if not peak_flops:
        return None
    attention = 12 * shape.num_hidden_layers * shape.hidden_size * min(seq_len, shape.sliding_window or seq_len)
    return (6 * num_params + attention) * tokens_per_second_per_device / peak_flops


def _validator(engine, val_arr, run: TrainRun) -> Callable[[], dict[str, float]]:
    """Validation loss and, from it, bits per byte on the same windows (the bytes their predicted
    tokens spell, counted once): the figure the evaluate stage compares with gzip and xz."""
    hp = run.hparams
    n_bytes = n_tokens = 0
    if (Path(run.tokenizer_dir) / "tokenizer.json").exists():
        data, n_tokens = eval_window_bytes(val_arr, hp.micro_batch_size, hp.eval_batches, token_bytes(run.tokenizer_dir))
        n_bytes = len(data)
    else:  # shards made without a tokenizer (synthetic token streams): no bytes to count
        log.warning("%s: no tokenizer.json, so no validation bits per byte", run.tokenizer_dir)

    def validate() -> dict[str, float]:
        loss = evaluate_loss(engine, val_arr, hp.micro_batch_size, hp.eval_batches)
        if not n_bytes:
            return {"val_loss": loss}
        return {"val_loss": loss, "val_bits_per_byte": to_bits_per_byte(loss * n_tokens, n_bytes)}

    return validate


@torch.no_grad()
def evaluate_loss(engine, arr, batch_size: int, max_batches: int) -> float:
    """Mean next-token loss over the first ``max_batches`` validation batches."""
    engine.eval()
    losses = [engine(input_ids=b.to(engine.device), labels=b.to(engine.device)).loss.item()
              for b in sequential_batches(arr, batch_size, max_batches)]
    return float(sum(losses) / len(losses))


def export_hf(run: TrainRun, checkpoint_tag: str, out_dir: str | Path) -> Path:
    """Consolidate the (possibly ZeRO-sharded) checkpoint into an HF ``save_pretrained`` folder."""
    import shutil

    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    from transformers import Starcoder2ForCausalLM

    shards = TokenShards(run.shards_dir, run.data_stage)
    model = Starcoder2ForCausalLM(starcoder2_config(run.shape, shards.vocab_size))
    _load_weights(model, get_fp32_state_dict_from_zero_checkpoint(run.work_dir, tag=checkpoint_tag), run.shape,
                  "checkpoint does not match the model")
    out = Path(out_dir)
    model.save_pretrained(out, safe_serialization=True)
    for f in Path(run.tokenizer_dir).iterdir():
        shutil.copy2(f, out / f.name)
    return out


# --------------------------------------------------------------------------- helpers
def _load_weights(model, state: dict, shape: ModelShape, mismatch: str) -> None:
    """Load a state dict whose tied ``lm_head`` may be absent; anything else missing is an error."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (shape.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"{mismatch}: missing {missing}, unexpected {unexpected}")
    model.tie_weights()


def _maybe_resume(engine, work: Path, run: TrainRun) -> int:
    """The step to continue from: a complete checkpoint of this very run (same fingerprint), else 0
    with ``work`` emptied and the run's fingerprint and DeepSpeed config written into it."""
    marker = work / "run_config.json"
    tag = _resume_tag(work)
    if tag and marker.exists() and marker.read_text() == run.fingerprint():
        _, client = engine.load_checkpoint(str(work), tag=tag)
        step = int(client["step"])
        torch.set_rng_state(client["torch_rng"])
        log.info("resumed from %s at step %d", work, step)
        return step
    if distributed.rank() == 0:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        marker.write_text(run.fingerprint())
        (work / "ds_config.json").write_text(json.dumps(deepspeed_config(run), indent=2))
    torch.distributed.barrier()
    return 0


def _save(engine, work: Path, step: int) -> None:
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
    """Launcher entry point: ``-m models.train --config run.json [--result result.json]``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a TrainRun as JSON (models/run.py)")
    parser.add_argument("--result", help="write the TrainResult JSON here (rank 0)")
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    result = train(TrainRun.model_validate_json(Path(args.config).read_text()))
    if args.result and distributed.rank() == 0:
        Path(args.result).write_text(json.dumps(asdict(result), indent=2))


if __name__ == "__main__":
    main()
