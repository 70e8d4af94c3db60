"""Training throughput: StarFlow's DeepSpeed engine (ZeRO-1, 1 rank) against a plain torch loop
(same model, AdamW, batches and steps), tokens/s and the ratio.

    .venv/bin/python benchmarks/train.py [--steps 60]

The plain loop is the floor the engine's bookkeeping should stay close to on one CPU rank.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.models.helpers


def make_shards(d: Path, seq_len: int, vocab: int) -> None:
    from tests.models.helpers import write_test_shards

    rng = np.random.default_rng(0)
    stream = rng.integers(0, vocab, size=512 * seq_len, dtype=np.uint16)
    write_test_shards(d, stream, stream[: 32 * seq_len], seq_len, vocab)


def plain_torch(shape, d: Path, steps: int, batch: int) -> float:
    from transformers import Starcoder2ForCausalLM

    from models.data import TokenShards, random_batch
    from models.presets import starcoder2_config

    shards = TokenShards(d)
    arr = shards.split("train")
    torch.manual_seed(0)
    model = Starcoder2ForCausalLM(starcoder2_config(shape, shards.vocab_size))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        b = random_batch(arr, batch, 0, step)
        loss = model(input_ids=b, labels=b).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return steps * batch * shards.seq_len / (time.perf_counter() - t0)


def main() -> None:
    from models.params import TrainParams
    from models.presets import PRESETS
    from models.run import TrainRun
    from models.train import build_model, mfu, train

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--peak-flops", type=float, default=os.cpu_count() * 2.2e9 * 64,
                    help="the device's fp32 peak, for MFU (default: this machine's vCPUs x 2.2 GHz x 64 fp32 "
                         "FLOP/cycle, i.e. two AVX-512 FMA units)")
    args = ap.parse_args()
    shape = PRESETS["tiny"]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        make_shards(d, args.seq_len, 4096)
        peer = plain_torch(shape, d, args.steps, args.batch)
        hparams = TrainParams(micro_batch_size=args.batch, max_steps=args.steps, eval_every=10**9, eval_batches=1,
                              checkpoint_every=10**9, zero_stage=1)
        run = TrainRun(hparams=hparams, shape=shape, shards_dir=str(d), tokenizer_dir=str(d), work_dir=str(d / "work"))
        ours = train(run).tokens_per_second
    print(f"model: tiny preset, batch {args.batch} x {args.seq_len} tokens, {args.steps} steps, fp32")
    n_params = sum(p.numel() for p in build_model(run, 4096).parameters())
    for name, tps in (("plain torch loop:        ", peer), ("starflow DeepSpeed ZeRO-1:", ours)):
        print(f"{name} {tps:8.0f} tokens/s  MFU {mfu(n_params, shape, args.seq_len, tps, args.peak_flops):.1%}"
              f" of {args.peak_flops / 1e9:.0f} GFLOP/s")
    print(f"ratio starflow/plain torch: {ours / peer:.2f}x  (overhead {peer / ours:.2f}x; target <= 1.15x)")


if __name__ == "__main__":
    main()
