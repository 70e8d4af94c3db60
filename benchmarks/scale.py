"""Ingest, dedup and curate at 1x, 3x and 10x of one corpus of real code, beside datatrove.

    .venv/bin/python benchmarks/scale.py                                 # 120 MB, 360 MB, 1.2 GB (the issue's run)
    .venv/bin/python benchmarks/scale.py --base-mb 5 --sizes 1,3         # a quick check of the harness
    .venv/bin/python benchmarks/scale.py --executor auto --datatrove-sizes 1

The corpus (``benchmarks/scale_corpus.py``): real repositories from this machine (standard
libraries of nine interpreters, site-packages distributions with their dist-info licenses, the
Cloud SDK, headers...), a smaller size being a prefix (whole repositories) of a bigger one, cached
in ``/work/bench_corpus``. For each size, in a fresh workspace laid out as
``tests/workspaces.make_workspace`` makes one (``starflow init``; ``params.yaml`` the project's,
with the corpus as the only ``directory`` source and ``ray.executor`` from ``--executor``), the
stages run as a user runs them: ``starflow stage ingest``, ``starflow stage dedup``,
``starflow stage curate``, each its own process of the venv's CLI (Prefect flow, MLflow run,
``metrics/<stage>.json``). Then, on the same files (the ingest output, cut into ``--workers``
Parquet files on repository boundaries), datatrove's MinHash dedup (``benchmarks/dedup.py``'s
peer: its four stages, ``LocalPipelineExecutor`` with ``--workers`` processes, ``params.yaml:
dedup``'s n-grams, bands and rows), and the license check: every repository's license result
from ingest (``repos`` table: ``license_type`` and ``detected_licenses``) against ScanCode alone
(the same detection with the known-text fast pass taken out), in a process of its own.

Measured per process, the same way for all: every ``--sample-s`` (0.2 s) the whole process tree
(the CLI process and every descendant: Ray's GCS, raylet, workers and agents, datatrove's worker
processes) is read with psutil: the sum of RSS (peak reported; Ray's shared object store counts
once per process that maps it, so Ray's figures overstate memory), the sum of PSS (shared pages
split among the processes mapping them: closer to the real footprint) and the CPU time of each
process (user + system, its last reading kept when it exits; processes shorter than a sample are
missed). CPU / wall is also given from the moment a raylet appears in the tree to its last
sample ("once Ray is up"). Wall times are process wall times: imports, Prefect, MLflow and Ray's
start included. The machine may be shared: compare figures of the same run.

Prints a table per size and the acceptance ratios of issue 15 with PASS/FAIL, writes
``benchmarks/results/scale.json`` and appends a summary row to ``benchmarks/scale.jsonl``. A stage
that fails is reported with its log tail; the later stages of that size are skipped, the other
sizes still run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BIN = Path(sys.executable).parent
RESULTS = ROOT / "benchmarks" / "results" / "scale.json"
HISTORY = ROOT / "benchmarks" / "scale.jsonl"
STAGES = ("ingest", "dedup", "curate")
T0 = time.perf_counter()
LOAD_AT_START = round(os.getloadavg()[0], 1)
"""The machine's 1-minute load average when the benchmark started (the machine may be shared)."""


def log(msg: str) -> None:
    """A progress line: UTC time and seconds since the benchmark started."""
    print(f"[{datetime.now(timezone.utc):%H:%M:%S} +{time.perf_counter() - T0:6.0f}s] {msg}", flush=True)


# --------------------------------------------------------------------------- measuring a process tree
class TreeSampler:
    """Samples a process and all its descendants: summed RSS/PSS/USS, CPU time per process."""

    def __init__(self, pid: int, interval: float, pss_every: int = 5):
        import psutil

        self.root = psutil.Process(pid)
        self.interval = interval
        self.pss_every = max(1, pss_every)
        """PSS/USS (``memory_full_info``: the kernel's smaps_rollup) every this many samples: it costs
        about ten times RSS per process; RSS, the acceptance figure, is read every sample."""
        self.cpu: dict[int, float] = {}
        self.peak_rss = self.peak_pss = self.peak_uss = 0
        self.peak_at = 0.0
        self.peak_procs: list[tuple[str, float]] = []  # (process name, RSS MB) at the peak: who holds the memory
        self.max_procs = 0
        self.series: list[tuple[float, float, float, float]] = []  # (t, rss MB, pss MB, cpu s), one per second
        self.ray_first: tuple[float, float] | None = None  # (t, cpu) when a raylet was first seen
        self.ray_last: tuple[float, float] | None = None
        self.sample_cost = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        last_series = -1.0
        while not self._stop.is_set():
            s0 = time.perf_counter()
            try:
                tree = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                break
            rss = pss = uss = 0
            ray_up = False
            full_now = self.samples % self.pss_every == 0
            procs: list[tuple[str, int]] = []
            for p in tree:
                try:
                    with p.oneshot():
                        t = p.cpu_times()
                        self.cpu[p.pid] = t.user + t.system
                        if full_now:
                            full = p.memory_full_info()
                            one, pss, uss = full.rss, pss + full.pss, uss + full.uss
                        else:
                            one = p.memory_info().rss
                        rss += one
                        procs.append((p.name(), one))
                        ray_up = ray_up or p.name() == "raylet"
                except psutil.Error:
                    pass
            now = time.perf_counter() - self._t0
            cpu = sum(self.cpu.values())
            if rss > self.peak_rss:
                self.peak_rss, self.peak_at = rss, now
                self.peak_procs = sorted(((n, round(b / 2**20)) for n, b in procs), key=lambda x: -x[1])
            if full_now:
                self.peak_pss, self.peak_uss = max(self.peak_pss, pss), max(self.peak_uss, uss)
            self.max_procs = max(self.max_procs, len(tree))
            if ray_up:
                self.ray_first = self.ray_first or (now, cpu)
                self.ray_last = (now, cpu)
            if full_now and now - last_series >= 1.0:
                self.series.append((round(now, 1), round(rss / 2**20, 1), round(pss / 2**20, 1), round(cpu, 2)))
                last_series = now
            self.samples += 1
            self.sample_cost += time.perf_counter() - s0
            self._stop.wait(max(0.0, self.interval - (time.perf_counter() - s0)))

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        cpu = sum(self.cpu.values())
        ray = None
        if self.ray_first and self.ray_last and self.ray_last[0] > self.ray_first[0]:
            span = self.ray_last[0] - self.ray_first[0]
            ray = {"ray_up_at_s": round(self.ray_first[0], 2), "ray_span_s": round(span, 2),
                   "cpu_per_wall_ray_up": round((self.ray_last[1] - self.ray_first[1]) / span, 3)}
        return {"peak_rss_mb": self.peak_rss / 2**20, "peak_pss_mb": self.peak_pss / 2**20,
                "peak_uss_mb": self.peak_uss / 2**20, "peak_at_s": round(self.peak_at, 1), "peak_processes": self.peak_procs,
                "cpu_s": cpu,
                "max_processes": self.max_procs, "samples": self.samples,
                "sample_ms": round(1000 * self.sample_cost / max(self.samples, 1), 2), **(ray or {}),
                "series": self.series}


def kill_tree(pid: int) -> None:
    """Kill a process we started and every descendant of it, each by its own pid."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass


RUNNING: set[int] = set()
"""Pids of the steps running now: killed with their trees if this benchmark is stopped."""


def stop_steps(signum, frame) -> None:
    """SIGTERM/SIGINT: end the running step's process tree (its Ray included), then exit cleanly
    (workspaces removed, measurements so far kept in the results file)."""
    for pid in list(RUNNING):
        kill_tree(pid)
    raise SystemExit(f"stopped by signal {signum}")


def measure(cmd: list[str], cwd: Path, env: dict[str, str], log_path: Path, timeout: float, interval: float) -> dict:
    """Run ``cmd`` to completion, sampling its process tree; stdout+stderr go to ``log_path``."""
    t0 = time.perf_counter()
    with open(log_path, "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        RUNNING.add(proc.pid)
        sampler = TreeSampler(proc.pid, interval)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(proc.pid)
            rc = proc.wait()
            out.write(f"\n[scale.py] killed after {timeout:.0f} s\n")
        finally:
            RUNNING.discard(proc.pid)
    wall = time.perf_counter() - t0
    res = {"rc": rc, "wall_s": wall, **sampler.stop()}
    res["cpu_per_wall"] = res["cpu_s"] / max(wall, 1e-9)
    if rc != 0:
        res["log_tail"] = log_path.read_text(errors="replace")[-4000:]
    return res


# --------------------------------------------------------------------------- workspace and stages
def stage_params(view: Path, executor: str, workers: int) -> dict:
    """The project's params.yaml with the corpus as the only source and the executor chosen."""
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["ingest"]["sources"] = [{"kind": "directory", "path": str(view)}]
    params["ray"]["executor"] = executor
    params["ray"]["num_cpus"] = workers
    return params


def stage_env(ws: Path) -> dict[str, str]:
    """As the pipeline tests run the CLI: this venv first on PATH, Prefect's home in the workspace,
    no servers and no outer MLflow run."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}:{env['PATH']}"
    env["PREFECT_HOME"] = str(ws / ".prefect-home")
    env["STARFLOW_NO_SERVERS"] = "1"
    env["TQDM_DISABLE"] = "1"
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("STARFLOW_MLFLOW_PARENT_RUN_ID", None)
    return env


def make_ws(ws: Path, params: dict, env: dict[str, str]) -> None:
    from tests.workspaces import make_workspace

    ws.mkdir(parents=True)
    make_workspace(ws, params, env)


_PREFECT_LINE = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) \| \w+ +\| Flow run .* - (Beginning flow run|Finished in state)")


def flow_seconds(log_text: str) -> float | None:
    """The stage's flow run from Prefect's log lines ("Beginning flow run" to "Finished in state"):
    the process wall without the interpreter's imports and Prefect's temporary server start."""
    begin = end = None
    for line in log_text.splitlines():
        m = _PREFECT_LINE.match(line)
        if m:
            h, mi, sec, ms = map(int, m.groups()[:4])
            t = h * 3600 + mi * 60 + sec + ms / 1000
            if m.group(5).startswith("Beginning") and begin is None:
                begin = t
            elif m.group(5).startswith("Finished"):
                end = t
    if begin is None or end is None:
        return None
    return end - begin + (86400 if end < begin else 0)


def read_metrics(ws: Path, stage: str) -> dict:
    path = ws / "metrics" / f"{stage}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def table_files(ws: Path, stage: str, name: str) -> list[Path]:
    """Parquet files of a stage's table ``name`` (``files``, ``repos``): a single ``<name>.parquet``
    or a partitioned dataset folder (``<name>/part-*.parquet``), whichever the stage wrote."""
    base = ws / "data" / stage
    folder = base / name
    if folder.is_dir():
        try:
            from ray_tasks.datasets import part_paths

            return [Path(p) for p in part_paths(folder)]
        except ImportError:
            return sorted(folder.glob("*.parquet"))
    single = base / f"{name}.parquet"
    return [single] if single.exists() else []


# --------------------------------------------------------------------------- datatrove on the same files
def datatrove_input(files: list[Path], dest: Path, parts: int) -> dict:
    """The ingest output as ``parts`` Parquet files (cut on repository boundaries, streamed row
    group by row group) with the ``id`` column datatrove's reader wants: one per worker task."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    dest.mkdir(parents=True)
    total = sum(pq.read_metadata(f).num_rows for f in files)
    writer, part, seen, last_repo, mb = None, -1, 0, None, 0.0
    for f in files:
        fh = pq.ParquetFile(f)
        for g in range(fh.num_row_groups):
            t = fh.read_row_group(g, columns=["repo_name", "path", "content"])
            names = t.column("repo_name").to_pylist()
            start = 0
            for i, name in enumerate(names):  # where a new part begins: the first new repository past its share
                want = min(parts - 1, (seen + i) * parts // max(total, 1))
                if want > part and name != last_repo:
                    if writer is not None and i > start:
                        writer.write_table(_with_id(t.slice(start, i - start)))
                    if writer is not None:
                        writer.close()
                    part += 1
                    writer = pq.ParquetWriter(dest / f"part-{part}.parquet", _with_id(t.slice(0, 0)).schema, compression="zstd")
                    start = i
                last_repo = name
            if writer is not None and start < t.num_rows:
                writer.write_table(_with_id(t.slice(start)))
            seen += t.num_rows
            mb += pc.sum(pc.binary_length(pc.cast(t.column("content"), pa.large_binary()))).as_py() / 1e6 if t.num_rows else 0
    if writer is not None:
        writer.close()
    return {"files": total, "mb": mb, "parts": part + 1}


def _with_id(t):
    import pyarrow.compute as pc

    return t.append_column("id", pc.binary_join_element_wise(t.column("repo_name"), t.column("path"), "/"))


def run_datatrove(ws: Path, work: Path, workers: int, timeout: float, interval: float) -> dict:
    src = work / "datatrove-input"
    info = datatrove_input(table_files(ws, "ingest", "files"), src, workers)
    out = work / "datatrove-out"
    out.mkdir()
    env = {**os.environ, "LOGURU_LEVEL": "WARNING", "TQDM_DISABLE": "1"}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "dedup.py"), "--peer", "datatrove", "--data", str(src),
           "--out", str(out), "--workers", str(workers)]
    res = measure(cmd, ROOT, env, work / "datatrove.log", timeout, interval)
    res["input"] = info
    if res["rc"] == 0:
        lines = (work / "datatrove.log").read_text().strip().splitlines()
        peer = next((json.loads(line) for line in reversed(lines) if line.startswith("{")), {})
        res.update({"in_process_s": peer.get("seconds"), "files": peer.get("files"), "removed": peer.get("removed")})
    shutil.rmtree(src, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    return res


# --------------------------------------------------------------------------- licenses vs ScanCode alone
def license_check(view: Path, repos_files: list[Path], out: Path) -> None:
    """(In its own process.) Each repository's licenses detected with ScanCode alone, against the
    stage's result; writes the agreement to ``out``."""
    import pyarrow.parquet as pq

    from ray_tasks.ingest import license_scan
    from ray_tasks.ingest.sources import directory_repositories

    # ScanCode alone = the stage's own detection without the known-text fast pass: ``licenses_from_text``
    # looks ``scan_text`` up in ``license_scan`` at each call, so pointing that name at ``scancode_ids``
    # (the path benchmarks/license_fastpass.py measures the pass against) is the whole difference.
    license_scan.scan_text = license_scan.scancode_ids
    stage: dict[str, dict] = {}
    for f in repos_files:
        for row in pq.read_table(f, columns=["repo_name", "license_type", "detected_licenses"]).to_pylist():
            stage[row["repo_name"]] = row
    t0 = time.perf_counter()
    n = agree = 0
    by_type: dict[str, int] = {}
    disagree = []
    for repo in directory_repositories(view, None):
        n += 1
        kind, ids = repo.license_type, ",".join(repo.detected_licenses)
        by_type[kind] = by_type.get(kind, 0) + 1
        got = stage.get(repo.name)
        if got and got["license_type"] == kind and (got["detected_licenses"] or "") == ids:
            agree += 1
        elif len(disagree) < 25:
            disagree.append({"repo": repo.name, "scancode": [kind, ids],
                             "stage": [got["license_type"], got["detected_licenses"]] if got else None})
    result = {"repos": n, "agree": agree, "agreement": agree / max(n, 1), "stage_repos": len(stage),
              "scancode_license_types": by_type, "scancode_s": time.perf_counter() - t0, "disagreements": disagree}
    out.write_text(json.dumps(result))


def run_license_check(view: Path, ws: Path, work: Path, timeout: float, interval: float) -> dict:
    repos = table_files(ws, "ingest", "repos")
    if not repos:
        return {"rc": -1, "error": "no repos table in data/ingest"}
    out = work / "licenses.json"
    cmd = [sys.executable, __file__, "--license-check", str(view), "--license-out", str(out), "--repos",
           *map(str, repos)]
    res = measure(cmd, ROOT, dict(os.environ), work / "licenses.log", timeout, interval)
    if res["rc"] == 0:
        res.update(json.loads(out.read_text()))
    return res


# --------------------------------------------------------------------------- one size
def run_size(k: int, args, work_root: Path, save) -> dict:
    """One size: workspace, stages, datatrove, license check; ``save(row)`` after every step, so
    that an interrupted benchmark keeps what it measured."""
    from benchmarks import scale_corpus

    view, corpus = scale_corpus.view(k * args.base_mb, log=log)
    log(f"{k}x: corpus {corpus['mb']:.1f} MB, {corpus['repos']} repositories, {corpus['files']} files "
        f"({corpus['synthetic_mb']:.1f} MB synthetic) at {view}")
    work = work_root / f"{k}x"
    ws = work / "ws"
    env = stage_env(ws)
    row: dict = {"size": k, "corpus": corpus, "stages": {}}
    make_ws(ws, stage_params(view, args.executor, args.workers), env)
    ok = True
    for stage in args.stages:
        cmd = [str(BIN / "starflow"), "stage", stage]
        if stage in args.stage_executor:  # this stage's own executor: a params file beside params.yaml
            own = ws / f"params.{stage}.yaml"
            own.write_text(yaml.safe_dump(stage_params(view, args.stage_executor[stage], args.workers), sort_keys=False))
            cmd += ["--params", own.name]
        log(f"{k}x: {' '.join(cmd[1:])} ...")
        r = measure(cmd, ws, env, work / f"{stage}.log", args.stage_timeout, args.sample_s)
        r["executor"] = args.stage_executor.get(stage, args.executor)
        r["metrics"] = {key: v for key, v in read_metrics(ws, stage).items() if not isinstance(v, (dict, list))}
        r["flow_s"] = flow_seconds((work / f"{stage}.log").read_text(errors="replace"))
        row["stages"][stage] = r
        save(row)
        if r["rc"] != 0:
            log(f"{k}x: {stage} FAILED (rc {r['rc']}); later stages of this size skipped. Log tail:\n{r['log_tail']}")
            ok = False
            break
        log(f"{k}x: {stage}: {r['wall_s']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB (PSS {r['peak_pss_mb']:.0f}), "
            f"CPU/wall {r['cpu_per_wall']:.2f}" + (f" ({r['cpu_per_wall_ray_up']:.2f} once Ray is up)"
                                                   if "cpu_per_wall_ray_up" in r else ""))
    ingested = row["stages"].get("ingest", {}).get("rc") == 0
    if ingested and k in args.datatrove_sizes:
        log(f"{k}x: datatrove MinHash dedup ...")
        try:
            dt_workers = 1 if args.stage_executor.get("dedup") == "local" else args.workers  # the same worker count
            r = run_datatrove(ws, work, dt_workers, args.stage_timeout, args.sample_s)
        except Exception as exc:  # a broken peer must not lose the stages' figures
            r = {"rc": -1, "error": repr(exc)}
        row["datatrove"] = r
        save(row)
        log(f"{k}x: datatrove: " + (f"{r['wall_s']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB, removed {r.get('removed')}"
                                   if r["rc"] == 0 else f"FAILED: {r.get('log_tail') or r.get('error')}"))
    if ingested and k in args.license_sizes:
        log(f"{k}x: licenses, ScanCode alone vs the stage ...")
        r = run_license_check(view, ws, work, args.stage_timeout, args.sample_s)
        row["licenses"] = r
        save(row)
        log(f"{k}x: licenses: " + (f"{r['agree']}/{r['repos']} repositories agree ({r['agreement']:.2%}), "
                                   f"{r['wall_s']:.0f} s" if r["rc"] == 0 else f"FAILED: {r.get('log_tail') or r.get('error')}"))
    row["ok"] = ok
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return row


# --------------------------------------------------------------------------- report
def stage_mb(row: dict) -> float:
    return row["corpus"]["mb"]


def print_size(row: dict) -> None:
    c = row["corpus"]
    print(f"\n{row['size']}x: {c['mb']:.1f} MB of code, {c['repos']} repositories, {c['files']} files"
          f" ({c['synthetic_mb']:.1f} MB synthetic); by origin (MB): {c['by_origin_mb']}")
    print(f"{'step':<11}{'wall s':>9}{'flow s':>8}{'MB/s':>8}{'peak RSS MB':>13}{'PSS MB':>9}{'USS MB':>9}{'CPU s':>9}"
          f"{'CPU/wall':>10}{'  Ray up':>9}  files in -> out")
    steps = [(s, r) for s, r in row["stages"].items()]
    if "datatrove" in row:
        steps.append(("datatrove", row["datatrove"]))
    if "licenses" in row:
        steps.append(("licenses", row["licenses"]))
    for name, r in steps:
        if r.get("rc") != 0:
            print(f"{name:<11} FAILED (rc {r.get('rc')}): {(r.get('log_tail') or r.get('error') or '')[-300:]!r}")
            continue
        m = r.get("metrics", {})
        flow = {"ingest": (m.get("files_kept", 0) + m.get("files_rejected", 0), m.get("files_kept")),
                "dedup": (m.get("files_in"), m.get("files_kept")),
                "curate": (m.get("files_in"), m.get("files_kept")),
                "datatrove": (r.get("files"), (r.get("files") or 0) - (r.get("removed") or 0)),
                "licenses": (r.get("repos"), r.get("agree"))}.get(name, ("", ""))
        ray = f"{r['cpu_per_wall_ray_up']:>9.2f}" if "cpu_per_wall_ray_up" in r else f"{'-':>9}"
        flow_s = f"{r['flow_s']:>8.1f}" if r.get("flow_s") else f"{'-':>8}"
        print(f"{name:<11}{r['wall_s']:>9.1f}{flow_s}{stage_mb(row) / r['wall_s']:>8.2f}{r['peak_rss_mb']:>13.0f}"
              f"{r['peak_pss_mb']:>9.0f}{r['peak_uss_mb']:>9.0f}{r['cpu_s']:>9.1f}{r['cpu_per_wall']:>10.2f}{ray}"
              f"  {flow[0]} -> {flow[1]}")
        if r.get("peak_processes"):
            print(f"{'':<11}at the peak ({r['peak_at_s']:.0f} s): " + ", ".join(f"{n} {mb}" for n, mb in r["peak_processes"][:6])
                  + (f", {len(r['peak_processes']) - 6} more" if len(r["peak_processes"]) > 6 else "") + " MB")
    for d in row.get("licenses", {}).get("disagreements", [])[:5]:
        print(f"  license disagreement {d['repo']}: ScanCode alone {d['scancode']}, the stage {d['stage']}")


def criteria(rows: list[dict]) -> list[dict]:
    """The acceptance checks of issue 15 over the smallest and the largest size measured."""
    out: list[dict] = []

    def add(name: str, value: float | None, limit: float, ok: bool | None, note: str = "") -> None:
        out.append({"criterion": name, "value": value, "limit": limit,
                    "result": "n/a" if ok is None else ("PASS" if ok else "FAIL"), "note": note})

    good = [r for r in rows if r["stages"]]
    if not good:
        return out
    lo, hi = min(good, key=lambda r: r["size"]), max(good, key=lambda r: r["size"])
    data_ratio = stage_mb(hi) / stage_mb(lo)
    scale = f"{hi['size']}x/{lo['size']}x"
    for stage in STAGES:
        a, b = lo["stages"].get(stage), hi["stages"].get(stage)
        if not (a and b and a["rc"] == 0 and b["rc"] == 0) or hi is lo:
            add(f"{stage} peak RSS {scale}", None, 1.3, None, "not measured at both sizes")
            continue
        peak = b["peak_rss_mb"] / a["peak_rss_mb"]
        add(f"{stage} peak RSS {scale}", round(peak, 3), 1.3, peak <= 1.3,
            f"{a['peak_rss_mb']:.0f} -> {b['peak_rss_mb']:.0f} MB (PSS {a['peak_pss_mb']:.0f} -> {b['peak_pss_mb']:.0f})")
        t = b["wall_s"] / a["wall_s"]
        limit = 1.1 * data_ratio  # "10x the data in at most 11x the time", for the data ratio measured
        add(f"{stage} time {scale}", round(t, 3), round(limit, 2), t <= limit,
            f"{a['wall_s']:.0f} -> {b['wall_s']:.0f} s for {data_ratio:.2f}x the data")
    d = hi["stages"].get("dedup")
    if d and d["rc"] == 0:
        big = stage_mb(hi) >= 1100
        add(f"dedup peak RSS at {stage_mb(hi):.0f} MB (GB)", round(d["peak_rss_mb"] / 1024, 3), 1.5,
            (d["peak_rss_mb"] / 1024 <= 1.5) if big else None,
            "" if big else "the criterion is for 1.2 GB of code; the largest size is smaller")
    if all(hi["stages"].get(s, {}).get("rc") == 0 for s in STAGES) and d:
        chain = sum(hi["stages"][s]["wall_s"] for s in STAGES)
        add(f"chain / dedup time at {hi['size']}x", round(chain / d["wall_s"], 3), 3.0, chain / d["wall_s"] <= 3.0,
            f"{chain:.0f} s / {d['wall_s']:.0f} s" + ("" if stage_mb(hi) >= 900 else "; the criterion is for about 1 GB"))
    else:
        add(f"chain / dedup time at {hi['size']}x", None, 3.0, None, "not every stage ran at this size")
    for row in (lo, hi) if hi is not lo else (hi,):
        dt, dd = row.get("datatrove"), row["stages"].get("dedup")
        if dt and dt.get("rc") == 0 and dd and dd["rc"] == 0:
            x = dt["wall_s"] / dd["wall_s"]
            inner = ""
            if dt.get("in_process_s") and dd.get("flow_s"):
                inner = (f"; after start-up (datatrove's own clock {dt['in_process_s']:.0f} s, the dedup flow run "
                         f"{dd['flow_s']:.0f} s): {dt['in_process_s'] / dd['flow_s']:.2f}x")
            add(f"dedup speed vs datatrove at {row['size']}x", round(x, 3), 5.0, x >= 5.0,
                f"process wall {dt['wall_s']:.0f} s vs {dd['wall_s']:.0f} s (StarFlow's Ray start included){inner}")
    for row in (hi,):
        ing = row["stages"].get("ingest")
        if ing and ing["rc"] == 0:
            v = ing.get("cpu_per_wall_ray_up")
            add(f"ingest CPU/wall once Ray is up at {row['size']}x", round(v, 3) if v else None, 1.7,
                (v >= 1.7) if v else None, f"{os.cpu_count()} cores; whole process {ing['cpu_per_wall']:.2f}"
                + ("" if v else "; Ray did not run (executor)"))
    lic = [r for r in good if r.get("licenses", {}).get("rc") == 0]
    for row in lic:
        v = row["licenses"]["agreement"]
        add(f"licenses agree with ScanCode alone at {row['size']}x", round(v, 4), 0.99, v >= 0.99,
            f"{row['licenses']['agree']}/{row['licenses']['repos']} repositories")
    return out


def print_criteria(checks: list[dict]) -> None:
    print("\nAcceptance (issue 15):")
    for c in checks:
        v = "-" if c["value"] is None else c["value"]
        print(f"  {c['result']:<5} {c['criterion']:<48} {v!s:>8}  (limit {c['limit']})  {c['note']}")


def estimate(rows: list[dict], sizes_mb: list[float], key: str = "wall_s") -> dict[str, float]:
    """Seconds each step would take at each of ``sizes_mb``: a straight line (fixed cost + cost per
    MB, least squares over the sizes measured; one size: proportional) per step."""
    import numpy as np

    names = sorted({n for r in rows for n, v in _steps(r) if v.get("rc") == 0})
    out: dict[str, float] = {}
    for name in names:
        pts = [(stage_mb(r), v[key]) for r in rows for n, v in _steps(r) if n == name and v.get("rc") == 0]
        x, y = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
        if len(pts) > 1 and np.ptp(x) > 0:
            b, a = np.polyfit(x, y, 1)
            if b <= 0:  # no growth measured (noise over a fixed cost): the fixed cost
                a, b = float(y.mean()), 0.0
            elif a < 0:  # faster than linear: proportional
                a, b = 0.0, float(np.sum(x * y) / np.sum(x * x))
        else:
            a, b = 0.0, float(y.mean() / x.mean())
        out[name] = sum(a + b * mb for mb in sizes_mb)
    return out


def print_estimate(rows: list[dict]) -> None:
    if not rows:
        return
    full = [k * 120.0 for k in (1, 3, 10)]
    est, cpu = estimate(rows, full), estimate(rows, full, "cpu_s")
    print("Extrapolated (a line per step through the sizes measured) to the full run (1x, 3x, 10x of 120 MB): "
          f"about {sum(est.values()) / 60:.0f} min of wall time (" + ", ".join(f"{k} {v / 60:.0f}" for k, v in est.items())
          + f" min); from CPU time (what a busy machine inflates less): {sum(cpu.values()) / 60:.0f} CPU-min, "
          f"about {sum(cpu.values()) / 60 / (os.cpu_count() or 1):.0f} min on {os.cpu_count()} idle cores ("
          + ", ".join(f"{k} {v / 60:.0f}" for k, v in cpu.items()) + " CPU-min)")


def _steps(row: dict) -> list[tuple[str, dict]]:
    return [*row["stages"].items(), *((k, row[k]) for k in ("datatrove", "licenses") if k in row)]


def summary_row(rows: list[dict], checks: list[dict], args, total_s: float) -> dict:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    sizes = {}
    for r in rows:
        sizes[f"{r['size']}x"] = {"mb": round(stage_mb(r), 1),
                                  **{s: {"wall_s": round(v["wall_s"], 1), "peak_rss_mb": round(v["peak_rss_mb"])}
                                     for s, v in r["stages"].items() if v["rc"] == 0},
                                  **({"datatrove_wall_s": round(r["datatrove"]["wall_s"], 1)}
                                     if r.get("datatrove", {}).get("rc") == 0 else {}),
                                  **({"license_agreement": round(r["licenses"]["agreement"], 4)}
                                     if r.get("licenses", {}).get("rc") == 0 else {})}
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": commit,
            "base_mb": args.base_mb, "sizes": sizes, "executor": args.executor, "workers": args.workers,
            "cpus": os.cpu_count(), "load_avg_start": LOAD_AT_START, "load_avg_end": round(os.getloadavg()[0], 1),
            "total_s": round(total_s),
            "passed": sum(c["result"] == "PASS" for c in checks), "failed": [c["criterion"] for c in checks if c["result"] == "FAIL"],
            "checks": {c["criterion"]: c["value"] for c in checks}}


def write_json_atomic(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    tmp.replace(path)


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int_list, default=[1, 3, 10], help="multiples of --base-mb (comma-separated)")
    ap.add_argument("--base-mb", type=float, default=120, help="MB of code at 1x")
    ap.add_argument("--executor", choices=["auto", "ray", "local"], default="ray", help="params.yaml: ray.executor for every stage")
    ap.add_argument("--stage-executor", type=lambda s: dict(kv.split("=", 1) for kv in s.split(",") if kv), default={},
                    help="per-stage executors, e.g. dedup=local (datatrove then runs with one worker to match)")
    ap.add_argument("--workers", type=int, default=2, help="ray.num_cpus, and datatrove's worker processes")
    ap.add_argument("--stages", type=lambda s: [x for x in s.split(",") if x], default=list(STAGES))
    ap.add_argument("--datatrove-sizes", type=int_list, default=None, help="sizes datatrove runs at (default: all)")
    ap.add_argument("--license-sizes", type=int_list, default=None,
                    help="sizes the ScanCode-alone check runs at (default: the smallest and the largest)")
    ap.add_argument("--stage-timeout", type=float, default=4 * 3600, help="seconds before a step is killed")
    ap.add_argument("--sample-s", type=float, default=0.2, help="process-tree sampling interval")
    ap.add_argument("--work-dir", type=Path, default=None, help="where workspaces go (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the workspaces and logs")
    ap.add_argument("--no-history", action="store_true", help="do not append to benchmarks/scale.jsonl")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--report", type=Path, help="print the tables and checks of a saved results file, run nothing")
    # internal: the ScanCode-alone license check, in its own process
    ap.add_argument("--license-check", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--license-out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--repos", type=Path, nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.license_check:
        license_check(args.license_check, args.repos, args.license_out)
        return
    if args.report:
        rows = json.loads(args.report.read_text())["rows"]
        for row in rows:
            print_size(row)
        print_criteria(criteria(rows))
        print_estimate(rows)
        return
    unknown = [s for s in args.stages if s not in STAGES]
    if unknown:
        ap.error(f"--stages: unknown {unknown}; expected some of {', '.join(STAGES)}")
    args.datatrove_sizes = args.sizes if args.datatrove_sizes is None else args.datatrove_sizes
    if args.license_sizes is None:
        args.license_sizes = sorted({min(args.sizes), max(args.sizes)})

    from benchmarks import scale_corpus

    signal.signal(signal.SIGTERM, stop_steps)
    signal.signal(signal.SIGINT, stop_steps)
    log(f"sizes {args.sizes} x {args.base_mb:g} MB, executor {args.executor}, {args.workers} workers, "
        f"{os.cpu_count()} CPUs (load average {LOAD_AT_START}); corpus cache {scale_corpus.cache_dir()}")
    scale_corpus.ensure(max(args.sizes) * args.base_mb, log=log)  # built once, before any clock
    work_root = Path(tempfile.mkdtemp(prefix="starflow-scale-", dir=args.work_dir))
    rows: list[dict] = []
    try:
        for k in sorted(args.sizes):
            try:
                rows.append(run_size(k, args, work_root, lambda row: write_json_atomic(
                    {"args": vars(args), "rows": [*rows, row], "partial": True}, args.results)))
            except Exception as exc:  # a broken size (a workspace that cannot be made) must not lose the others
                log(f"{k}x: FAILED before its stages finished: {exc!r}")
            write_json_atomic({"args": vars(args), "rows": rows}, args.results)
    finally:
        if not args.keep:
            shutil.rmtree(work_root, ignore_errors=True)
    total_s = time.perf_counter() - T0
    for row in rows:
        print_size(row)
    checks = criteria(rows)
    print_criteria(checks)
    print(f"\nTotal {total_s:.0f} s.")
    print_estimate(rows)
    summary = summary_row(rows, checks, args, total_s)
    write_json_atomic({"args": vars(args), "rows": rows, "criteria": checks, "summary": summary}, args.results)
    print(f"results: {args.results}")
    if not args.no_history:
        with open(HISTORY, "a") as fh:
            fh.write(json.dumps(summary) + "\n")
        print(f"summary row appended to {HISTORY}")


if __name__ == "__main__":
    main()
