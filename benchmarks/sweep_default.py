"""The default run's training settings swept against gzip: bits per byte on held-out repositories.

Trains the train stage's two runs (``models/run.py: stage_runs``) on an existing tokenize output,
with ``params.yaml``'s train section and the ``--set`` overrides, then scores the whole validation
stream the way the evaluate stage does (``models/perplexity.py: score_validation_stream``) and runs
gzip -9, bzip2 -9, xz -9e and zstd -22 on the very same bytes. One row per call, appended to
``--out`` (JSON lines); ``--table`` prints the rows so far as the README's sweep table.

    python -m benchmarks.sweep_default --shards data/tokenize --label "lr 4e-3" --set lr=0.004
    python -m benchmarks.sweep_default --table

Wall and CPU seconds are the training's alone (two CPU threads). On a machine shared with other
work the wall time inflates (and so does CPU time: OpenMP threads spin while they wait), so the
load average during the run is recorded beside it; the run's own wall time on a quiet machine is
what `starflow run` reports.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import yaml

RESULTS = Path(__file__).resolve().with_suffix(".jsonl")
"""The sweep's rows, kept in the repository: the README's table is printed from them."""


def train_and_score(shards: Path, overrides: dict, work: Path) -> dict:
    from flows.config import load_params
    from models.perplexity import score_validation_stream
    from models.run import stage_runs
    from models.train import export_hf, train
    from ray_tasks.evaluate.compressors import compressed_bits_per_byte

    params = load_params("params.yaml")
    stage2 = {k[len("stage2."):]: v for k, v in overrides.items() if k.startswith("stage2.")}
    top = {k: v for k, v in overrides.items() if "." not in k}
    model = {k[len("model."):]: v for k, v in overrides.items() if k.startswith("model.")}
    hp = params.train.model_copy(update={
        **top,
        "stage2": params.train.stage2.model_copy(update=stage2),
        "model": params.train.model.model_copy(update=model),
    })
    hp = type(hp).model_validate(hp.model_dump())  # validate the overrides
    runs = stage_runs(hp, shards, work, params.tokenize.seq_len_stage2)
    cpu0, t0, load = _cpu_seconds(), time.perf_counter(), os.getloadavg()[0]
    tokens = 0
    for i, run in enumerate(runs):
        result = train(run)
        tokens += result.tokens_seen
        export_hf(run, result.checkpoint_tag, work / ("stage1_export" if i + 1 < len(runs) else "final"))
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    load = (load + os.getloadavg()[0]) / 2
    scored = score_validation_stream(str(work / "final"), str(shards), hp.micro_batch_size,
                                     params.evaluate.bits_per_byte_tokens)
    return {"parameters": result.num_parameters, "tokens_seen": tokens, "train_wall_s": round(wall, 1),
            "train_cpu_s": round(cpu, 1), "load_avg": round(load, 1),
            "val_loss_windows": round(result.val_loss_after, 4),
            "bits_per_byte": round(scored.bits_per_byte, 4), "bytes": len(scored.data),
            "compressors": {k: round(v, 4) for k, v in compressed_bits_per_byte(scored.data).items()}}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def print_table(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    print("| setting | corpus | parameters | tokens seen | train wall s (load avg) | bits/byte | gzip -9 | xz -9e | vs gzip |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        gz = r["compressors"]["gzip"]
        print(f"| {r['label']} | {r['corpus']} | {r['parameters'] / 1e6:.2f} M | {r['tokens_seen'] / 1e6:.2f} M | "
              f"{r['train_wall_s']:.0f} ({r['load_avg']}) | {r['bits_per_byte']:.3f} | {gz:.3f} | "
              f"{r['compressors']['xz']:.3f} | {r['bits_per_byte'] / gz - 1:+.1%} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=Path, help="a tokenize stage output (data/tokenize)")
    ap.add_argument("--label", help="the row's name in the table")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a train setting (e.g. lr=0.004, max_steps=1800, model.hidden_size=192, stage2.max_steps=50)")
    ap.add_argument("--corpus", default="", help="what the tokenize output was built from, for the table")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--table", action="store_true", help="print the rows so far and exit")
    args = ap.parse_args()
    if args.table:
        print_table(args.out)
        return
    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    work = Path(tempfile.mkdtemp(prefix="sweep-"))
    try:
        row = {"label": args.label or ", ".join(args.set) or "params.yaml", "overrides": overrides,
               "corpus": args.corpus, **train_and_score(args.shards, overrides, work)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    print(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
