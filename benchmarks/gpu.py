"""GPU check: StarFlow's training entry (models/train.py, DeepSpeed ZeRO-1, one device) on the
3B preset and a smaller model of the same width, a few dozen steps each; prints tokens/s, MFU
against the device's peak and peak memory.

    .venv/bin/python benchmarks/gpu.py                       # 3b-8l then 3b, bf16, 30 steps, 4 x 4096 tokens
    .venv/bin/python benchmarks/gpu.py --preset tiny --dtype fp32 --steps 3   # the CPU smoke run

Each model trains in a fresh process, so its peak memory is its own. Data are random tokens in
the tokenize stage's shard format (as benchmarks/train.py builds them): throughput does not
depend on what the tokens are. Tokens/s is the median over the steps after the first (the
first allocates and warms the kernels); the final checkpoint of a run (about 42 GB at 3B with
its optimizer state) is skipped, as it is storage time, not training time. MFU follows
``models.train.mfu`` (PaLM's 6N + 12·L·H·T FLOPs per token) over the dense bf16 peak of the
device from the vendor's data sheet, or ``--peak-tflops``; on CPU peak memory is the process's
peak resident set.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for benchmarks.train

MODELS = {"tiny": {"preset": "tiny"}, "3b": {"preset": "3b"}, "3b-8l": {"preset": "3b", "num_hidden_layers": 8},
          "7b": {"preset": "7b"}}
"""Model settings (``train.model`` in params.yaml) by name; ``3b-8l``: the 3B shape cut to 8 of its 30
layers (about 0.9B parameters), the smaller model of the check, with the same kernels' shapes."""

PEAK_BF16_TFLOPS = [
    # Dense (not 2:4-sparse) bf16 tensor-core peaks from NVIDIA's data sheets:
    # https://www.nvidia.com/en-us/data-center/h200/ , https://www.nvidia.com/en-us/data-center/h100/ ,
    # https://www.nvidia.com/en-us/data-center/a100/ , https://www.nvidia.com/en-us/data-center/l40s/ ,
    # https://www.nvidia.com/en-us/data-center/l4/ . Checked in order: "H100 PCIe" before "H100".
    ("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", action="append", choices=sorted(MODELS), help="repeatable (default: 3b-8l, 3b)")
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=4, help="sequences per step")
    ap.add_argument("--seq-len", type=int, help="default: min(4096, the model's max positions)")
    ap.add_argument("--vocab", type=int, default=49152, help="StarCoder2's vocabulary size")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--peak-tflops", type=float, help="device peak for MFU (default: from the device name, GPU bf16)")
    ap.add_argument("--json", action="store_true", help="one JSON line per model instead of text")
    args = ap.parse_args()
    presets = args.preset or ["3b-8l", "3b"]
    if len(presets) > 1:  # one process per model: separate peak memory, a fresh process group
        for name in presets:
            subprocess.run([sys.executable, __file__, *_argv(args, name)], check=True)
        return
    result = benchmark(presets[0], args)
    print(json.dumps(result) if args.json else report(result))


def _argv(args: argparse.Namespace, preset: str) -> list[str]:
    """The command line of one model's run: these settings, that preset."""
    argv = ["--preset", preset, "--dtype", args.dtype, "--steps", str(args.steps), "--batch", str(args.batch),
            "--vocab", str(args.vocab)]
    argv += ["--seq-len", str(args.seq_len)] if args.seq_len else []
    argv += ["--peak-tflops", str(args.peak_tflops)] if args.peak_tflops else []
    argv += ["--gradient-checkpointing"] * args.gradient_checkpointing + ["--json"] * args.json
    return argv


def benchmark(name: str, args: argparse.Namespace) -> dict:
    import models.train as train_module
    from benchmarks.train import make_shards
    from models.params import ModelParams, TrainParams
    from models.run import TrainRun

    model = ModelParams(**MODELS[name])
    shape = model.shape()
    seq_len = args.seq_len or min(4096, shape.max_position_embeddings)
    hparams = TrainParams(model=model, dtype=args.dtype, micro_batch_size=args.batch, max_steps=args.steps,
                          warmup_steps=min(args.steps, 10), eval_every=10**9, eval_batches=1,
                          checkpoint_every=10**9, zero_stage=1, gradient_checkpointing=args.gradient_checkpointing)
    per_step: list[float] = []
    train_module._save = lambda engine, work, step: None  # no checkpoint: storage time, not training time

    def on_metrics(step: int, metrics: dict[str, float]) -> None:
        if "tokens_per_second" in metrics:
            per_step.append(metrics["tokens_per_second"])

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        make_shards(d, seq_len, args.vocab)
        run = TrainRun(hparams=hparams, shape=shape, shards_dir=str(d), tokenizer_dir=str(d), work_dir=str(d / "work"))
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        result = train_module.train(run, on_metrics)
    tps = statistics.median(per_step[1:] or per_step)
    peak = peak_flops(args.peak_tflops, args.dtype)
    return {"model": name, "parameters": result.num_parameters, "dtype": args.dtype, "device": device_name(),
            "batch": args.batch, "seq_len": seq_len, "steps": args.steps, "tokens_per_second": tps,
            "mfu": train_module.mfu(result.num_parameters, shape, seq_len, tps, peak), "peak_tflops": peak and peak / 1e12,
            "peak_memory_gib": peak_memory_bytes() / 2**30, "final_train_loss": result.train_loss_last}


def device_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def peak_flops(override_tflops: float | None, dtype: str) -> float | None:
    """The device's peak FLOP/s: the override, else the data-sheet bf16 figure of a known GPU, else None."""
    if override_tflops:
        return override_tflops * 1e12
    if dtype != "bf16" or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((tflops * 1e12 for key, tflops in PEAK_BF16_TFLOPS if key in name), None)


def peak_memory_bytes() -> int:
    """Peak GPU memory allocated by torch, or on CPU the process's peak resident set (ru_maxrss is KiB)."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def report(r: dict) -> str:
    mfu = f"{100 * r['mfu']:.1f}% of {r['peak_tflops']:.0f} TFLOP/s" if r["mfu"] is not None else "n/a (no known peak; --peak-tflops)"
    return (f"{r['model']}: {r['parameters'] / 1e9:.2f}B parameters, {r['dtype']}, {r['device']}, "
            f"{r['batch']} x {r['seq_len']} tokens/step, {r['steps']} steps\n"
            f"  tokens/s {r['tokens_per_second']:10.0f}   MFU {mfu}   peak memory {r['peak_memory_gib']:.1f} GiB   "
            f"last loss {r['final_train_loss']:.3f}")


if __name__ == "__main__":
    main()
