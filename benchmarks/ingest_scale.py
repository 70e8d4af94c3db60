"""Ingest at 1x, 3x (and 10x) of a corpus of real files: wall time, CPU time / wall time, peak RSS.

The corpus: real package folders (this interpreter's standard library and the venv's
site-packages), one repository each, taken in name order until the size is reached, as a
``directory`` source (a folder of symlinks to them: nothing is copied). Each size runs the
stage (``ray_tasks.ingest.stage.ingest_to``, as ``flows/ingest.py`` calls it) in a fresh
process; this process samples the whole process tree (the driver, and on Ray its raylet,
GCS and workers) with psutil for peak RSS and CPU time. The named peer of each size is the 1x
run: the ratios say whether time grows linearly and memory stays flat.

    python benchmarks/ingest_scale.py --mb 20 --sizes 1 3 [--executor ray|local]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ray_tasks.ingest.sources import SKIP_DIRS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SKIP = {"__pycache__", "site-packages", "test", "tests", "idlelib", "tkinter", "lib2to3", "ensurepip"}
MAX_REPO_MB = 40  # one huge package (torch) would make the sizes lumpy


def package_folders() -> list[Path]:
    """Real folders of code: the standard library's packages, then site-packages', by name."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    site = Path(sysconfig.get_paths()["purelib"])
    out = []
    for base in (stdlib, site):
        out += sorted(p for p in base.iterdir() if p.is_dir() and not p.is_symlink() and p.name not in SKIP
                      and not p.name.endswith((".dist-info", ".egg-info")) and not p.name.startswith(("_", ".")))
    return out


def folder_bytes(path: Path) -> int:
    """Bytes the stage will read from a folder (ingest's own walk: no __pycache__, no symlinks)."""
    total = 0
    for dirpath, dirnames, names in os.walk(path):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for n in names:
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_size
            except OSError:
                pass
    return total


def build_corpus(dest: Path, target_bytes: int, pool: list[tuple[Path, int]]) -> tuple[int, int]:
    """Symlinks to pool folders in ``dest`` until ``target_bytes``; (repositories, bytes)."""
    dest.mkdir(parents=True)
    total = n = 0
    for folder, size in pool:
        if total >= target_bytes:
            break
        (dest / f"{folder.parent.name}__{folder.name}").symlink_to(folder, target_is_directory=True)
        total, n = total + size, n + 1
    if total < target_bytes:
        raise SystemExit(f"only {total / 1e6:.0f} MB of real folders available; ask for less")
    return n, total


def run_stage(corpus: Path, out: Path, executor: str, batch_mb: int) -> dict:
    """The stage in a child process; its process tree sampled every 0.1 s."""
    code = (
        "import json, sys, time; from pathlib import Path\n"
        "from ray_tasks.executor import RayParams, executor_session\n"
        "from ray_tasks.ingest.params import IngestParams\n"
        "from ray_tasks.ingest.sources import SourceSkips, repositories\n"
        "from ray_tasks.ingest.stage import ingest_to\n"
        f"cfg = IngestParams.model_validate({{'sources': [{{'kind': 'directory', 'path': {str(corpus)!r}}}],"
        f" 'batch_bytes': {batch_mb} * 2**20}})\n"
        "t = time.perf_counter(); skips = SourceSkips(); repos = list(repositories(cfg.sources, skips=skips))\n"
        "listed = time.perf_counter() - t\n"
        f"with executor_session(RayParams(executor={executor!r})) as use_ray:\n"
        f"    t = time.perf_counter(); stats = ingest_to(Path({str(out)!r}), repos, cfg, use_ray, skips.files)\n"
        "print(json.dumps({'list_s': listed, 'ingest_s': time.perf_counter() - t, 'files': stats['files_kept'],"
        " 'bytes': stats['bytes_kept']}))\n"
    )
    out.mkdir(parents=True)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    parent = psutil.Process(proc.pid)
    peak, cpu = 0, {}
    while proc.poll() is None:
        try:
            tree = [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        rss = 0
        for p in tree:
            try:
                rss += p.memory_info().rss
                t = p.cpu_times()
                cpu[p.pid] = t.user + t.system + t.children_user + t.children_system
            except psutil.NoSuchProcess:
                pass
        peak = max(peak, rss)
        time.sleep(0.1)
    wall = time.perf_counter() - start
    result = json.loads(proc.stdout.read().strip().splitlines()[-1])
    if proc.returncode:
        raise SystemExit(f"the stage failed at {corpus}")
    return {**result, "wall_s": wall, "cpu_s": sum(cpu.values()), "peak_rss_mb": peak / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=20, help="size of the 1x corpus in MB")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--executor", choices=["ray", "local"], default="ray")
    ap.add_argument("--batch-mb", type=int, default=8, help="ingest.batch_bytes in MiB")
    args = ap.parse_args()
    pool = [(p, folder_bytes(p)) for p in package_folders()]
    pool = [(p, s) for p, s in pool if 0 < s <= MAX_REPO_MB * 1e6]
    rows = []
    with tempfile.TemporaryDirectory(prefix="ingest_scale.") as tmp:
        for k in args.sizes:
            n, total = build_corpus(Path(tmp) / f"corpus{k}", int(k * args.mb * 1e6), pool)
            r = run_stage(Path(tmp) / f"corpus{k}", Path(tmp) / f"out{k}", args.executor, args.batch_mb)
            rows.append({"size": k, "repos": n, "source_mb": total / 1e6, **r})
            print(json.dumps(rows[-1]), flush=True)
    base = rows[0]
    print(f"\n{'size':>5} {'repos':>6} {'MB':>7} {'files':>7} {'wall s':>7} {'cpu/wall':>8} {'peak MB':>8}"
          f" {'time x':>7} {'rss x':>6}")
    for r in rows:
        print(f"{r['size']:>4}x {r['repos']:>6} {r['source_mb']:>7.1f} {r['files']:>7} {r['wall_s']:>7.1f}"
              f" {r['cpu_s'] / r['wall_s']:>8.2f} {r['peak_rss_mb']:>8.0f} {r['wall_s'] / base['wall_s']:>7.2f}"
              f" {r['peak_rss_mb'] / base['peak_rss_mb']:>6.2f}")
    print(f"(executor {args.executor}, {os.cpu_count()} CPUs; time x / rss x are against the "
          f"{base['size']}x run; the machine may be shared, which shows in wall time)")


if __name__ == "__main__":
    main()
