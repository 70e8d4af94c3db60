"""Incremental curation: a source grown by 10% new repositories, against a full run on the union.

    .venv/bin/python benchmarks/incremental.py                  # 120 MB of real code, +10% repositories
    .venv/bin/python benchmarks/incremental.py --mb 40 --grow 0.2 --keep --work-dir /tmp/inc

Issue 16, acceptance item 1: adding 10% new repositories to a directory source and running the
pipeline processes only those (counts per stage), costs at most 25% of a full run's curation time,
and yields the same curated set as a full run on all repositories.

The corpus is ``scale_corpus.py``'s (real code of this machine, repositories in a fixed random
order). The stages run as a user runs the pipeline: ``starflow run --only ingest --only dedup --only
curate`` (one process, one Ray start, the sources' fingerprint checked, DVC commits each stage's
outputs), timed over its process tree (``scale.py``'s sampler); the curation time is the three
stages' wall time as the run's summary gives it (``.starflow/last_run.json``), and the whole
command's is printed beside it. ``--per-stage`` runs ``starflow stage X`` per stage instead, each in
its own process (each pays interpreter, Prefect and Ray start-up):

1. workspace ``grown``: a ``directory`` source whose folder holds the first N / (1 + grow)
   repositories of the corpus's order; ingest, dedup and curate run cold (the first full run; the
   work folders under ``.starflow/`` fill as a side effect);
2. the remaining repositories are added to the same folder (the order is a hash of the names, so
   they land all over the name-sorted listing, as new repositories of a real source do), and the
   three stages run again: the incremental run, whose counts come from each stage's
   ``last_run.json`` (what it computed and what it reused);
3. workspace ``full``: a fresh workspace (empty work folders) on the grown folder: the full run.

It prints each stage's wall time in the three runs, the incremental/full ratio, the counts, and
whether every file under ``data/{ingest,dedup,curate}`` and ``metrics/`` is byte-identical between
the incremental and the full run; a row is appended to ``benchmarks/incremental.jsonl``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import scale_corpus  # noqa: E402
from benchmarks.scale import BIN, make_ws, measure, stage_env, stage_params  # noqa: E402

STAGES = ("ingest", "dedup", "curate")
HISTORY = ROOT / "benchmarks" / "incremental.jsonl"
LIMIT = 0.25
"""The issue's bound: the incremental run's curation time over the full run's."""


def log(msg: str) -> None:
    print(f"[incremental {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def link_repos(folder: Path, names: list[str]) -> None:
    """Add the corpus's repositories ``names`` to ``folder`` (symlinks; a directory source reads them)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        link = folder / name
        if not link.exists():
            link.symlink_to(scale_corpus.cache_dir() / "repos" / name, target_is_directory=True)


def run_pipeline(ws: Path, label: str, work: Path, timeout: float) -> dict:
    """``starflow run`` of ingest, dedup and curate in ``ws``: per stage its wall time (from the run's
    summary) and ``last_run.json`` counts; the command's wall time, CPU time and peak RSS."""
    cmd = [str(BIN / "starflow"), "run", *[a for s in STAGES for a in ("--only", s)]]
    r = measure(cmd, ws, stage_env(ws), work / f"{label}-run.log", timeout, 0.5)
    if r["rc"] != 0:
        raise SystemExit(f"{label}: starflow run failed (rc {r['rc']}):\n{r.get('log_tail', '')}")
    summary = json.loads((ws / ".starflow" / "last_run.json").read_text())
    if summary["ran"] != list(STAGES):
        raise SystemExit(f"{label}: expected {STAGES} to run, the run says {summary}")
    out: dict = {s: {"wall_s": summary["wall_s"][s], "counts": last_run(ws, s)} for s in STAGES}
    out["command"] = {k: r[k] for k in ("wall_s", "peak_rss_mb", "cpu_s")} | {"dvc_pushed": summary["dvc_pushed"]}
    for s in STAGES:
        log(f"{label}: {s} {out[s]['wall_s']:.1f} s, {out[s]['counts'] or ''}")
    log(f"{label}: starflow run {r['wall_s']:.1f} s in all, peak {r['peak_rss_mb']:.0f} MB, "
        f"{summary['dvc_pushed']} files pushed to the DVC remote")
    return out


def run_stages(ws: Path, label: str, work: Path, timeout: float) -> dict:
    """ingest, dedup, curate in ``ws``, ``starflow stage X`` each: per stage its wall time, peak RSS
    and ``last_run.json`` counts."""
    env = stage_env(ws)
    out = {}
    for stage in STAGES:
        r = measure([str(BIN / "starflow"), "stage", stage], ws, env, work / f"{label}-{stage}.log", timeout, 0.5)
        if r["rc"] != 0:
            raise SystemExit(f"{label}: {stage} failed (rc {r['rc']}):\n{r.get('log_tail', '')}")
        r["counts"] = last_run(ws, stage)
        out[stage] = {k: r[k] for k in ("wall_s", "peak_rss_mb", "cpu_s", "counts")}
        log(f"{label}: {stage} {r['wall_s']:.1f} s, peak {r['peak_rss_mb']:.0f} MB, {r['counts'] or ''}")
    return out


def last_run(ws: Path, stage: str) -> dict:
    """What the stage says it computed and reused (its unversioned ``last_run.json`` in its work folder)."""
    found = sorted((ws / ".starflow").glob(f"**/{stage}/**/last_run.json")) + \
        sorted((ws / ".starflow").glob(f"**/{stage}/last_run.json"))
    return json.loads(found[0].read_text()) if found else {}


def digests(ws: Path) -> dict[str, str]:
    """md5 of every file of the data stages' outputs and of their metrics."""
    files = [p for stage in STAGES for p in (ws / "data" / stage).rglob("*") if p.is_file()]
    files += [ws / "metrics" / f"{s}.json" for s in STAGES]
    return {str(p.relative_to(ws)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(files)}


def compare(a: dict[str, str], b: dict[str, str]) -> dict[str, list[str]]:
    """Per stage, the files that differ (or exist on one side only)."""
    diff: dict[str, list[str]] = {s: [] for s in STAGES}
    for name in sorted(set(a) | set(b)):
        if a.get(name) != b.get(name):
            stage = next(s for s in STAGES if f"/{s}" in name or name.startswith(f"data/{s}"))
            diff[stage].append(name)
    return diff


def total(run: dict) -> float:
    return sum(run[s]["wall_s"] for s in STAGES)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=120, help="MB of code after growing")
    ap.add_argument("--grow", type=float, default=0.1, help="new repositories, as a fraction of the first run's")
    ap.add_argument("--executor", choices=["auto", "ray", "local"], default="auto", help="ray.executor")
    ap.add_argument("--workers", type=int, default=2, help="ray.num_cpus")
    ap.add_argument("--per-stage", action="store_true",
                    help="each stage as `starflow stage X` in its own process, not one `starflow run`")
    ap.add_argument("--stage-timeout", type=float, default=3600)
    ap.add_argument("--work-dir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the workspaces")
    ap.add_argument("--no-history", action="store_true")
    args = ap.parse_args()

    _, corpus = scale_corpus.view(args.mb, log=log)
    repos = scale_corpus.prefix_for(scale_corpus.load_manifest(), args.mb)
    n_first = round(len(repos) / (1 + args.grow))
    first, new = [r["name"] for r in repos[:n_first]], [r["name"] for r in repos[n_first:]]
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="starflow-incremental-"))
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    source = work / "source"
    link_repos(source, first)
    log(f"corpus {corpus['mb']:.1f} MB: {len(first)} repositories, then {len(new)} more "
        f"({sum(r['bytes'] for r in repos[n_first:]) / 1e6:.1f} MB) into {source}")

    params = stage_params(source, args.executor, args.workers)
    grown_ws, full_ws = work / "grown", work / "full"
    run = run_stages if args.per_stage else run_pipeline
    make_ws(grown_ws, params, stage_env(grown_ws))
    cold = run(grown_ws, "first", work, args.stage_timeout)
    link_repos(source, new)
    incremental = run(grown_ws, "incremental", work, args.stage_timeout)
    make_ws(full_ws, params, stage_env(full_ws))
    full = run(full_ws, "full", work, args.stage_timeout)
    diff = compare(digests(grown_ws), digests(full_ws))

    ratio = total(incremental) / total(full)
    print(f"\n{len(first)} repositories, then {len(new)} new ({args.grow:.0%}); {corpus['mb']:.0f} MB in all")
    print(f"{'stage':<8} {'first s':>8} {'incr. s':>8} {'full s':>8} {'incr/full':>9}  identical  counts (incremental run)")
    for s in STAGES:
        print(f"{s:<8} {cold[s]['wall_s']:>8.1f} {incremental[s]['wall_s']:>8.1f} {full[s]['wall_s']:>8.1f} "
              f"{incremental[s]['wall_s'] / full[s]['wall_s']:>9.2f}  {'yes' if not diff[s] else 'NO ' + str(len(diff[s]))}"
              f"        {json.dumps(incremental[s]['counts'])}")
    print(f"{'chain':<8} {total(cold):>8.1f} {total(incremental):>8.1f} {total(full):>8.1f} {ratio:>9.2f}")
    if not args.per_stage:
        c = [r["command"]["wall_s"] for r in (cold, incremental, full)]
        print(f"{'command':<8} {c[0]:>8.1f} {c[1]:>8.1f} {c[2]:>8.1f} {c[1] / c[2]:>9.2f}  "
              "(the whole `starflow run`: start-up, Ray, the sources check, the stages, the DVC push)")
    same = not any(diff.values())
    print(f"incremental / full curation time: {ratio:.2f} (limit {LIMIT}): {'PASS' if ratio <= LIMIT else 'FAIL'}")
    print(f"outputs of the incremental run equal the full run's: {'PASS' if same else 'FAIL ' + json.dumps(diff)}")
    if not args.no_history:
        row = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "mb": round(corpus["mb"], 1),
               "repos_first": len(first), "repos_new": len(new), "executor": args.executor,
               "mode": "per-stage" if args.per_stage else "starflow run", "first": cold,
               "incremental": incremental, "full": full, "ratio": round(ratio, 3), "identical": same,
               "differing": {s: d for s, d in diff.items() if d}}
        with open(HISTORY, "a") as fh:
            fh.write(json.dumps(row) + "\n")
    if not args.keep and args.work_dir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
