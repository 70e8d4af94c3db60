"""Near-dedup: StarFlow against datatrove, datasketch and a bare rensa script on the same corpus.

    .venv/bin/python benchmarks/dedup.py                      # the default corpus (data/ingest/files/)
    .venv/bin/python benchmarks/dedup.py --files 100000       # synthetic corpus mutated from real code
    .venv/bin/python benchmarks/dedup.py --files 10000 --scaling 100000 --incremental --quality-pairs 1500

Every peer reads the same Parquet files (two, one per worker), uses 5-grams, 250 permutations,
25 bands x 10 rows and keeps one file per cluster, writing the kept rows to Parquet; each runs
in its own process and its peak RSS is the sum over its process tree (Ray and datatrove
workers included), sampled every 50 ms. Figures of peers measured in the same run are
comparable; the ratios are what to read, the machine is shared.

* floor: read the Parquet and hash every file (xxh3), nothing else.
* starflow: what ``starflow dedup`` runs (reading the Parquet files as the stage does, by row
  group: ``ray_tasks/dedup/source.py``): repository and file exact dedup, LSH,
  verification, union-find, index and outputs written, with the auto executor: in one
  process below 1 GB of content, on a local Ray with ``--workers`` CPUs above (Ray's start
  then counted in the time).
* starflow-ray: the same, always on a local Ray with ``--workers`` CPUs; Ray's start
  (``ray.init``, workers up) is reported apart.
* starflow-1p: the same, always in one process (compare with the one-process scripts below).

Every StarFlow row starts its clock after the process start-up (imports, the code-point
table and loading the compiled Numba kernels, about 1.5 s, printed), as every peer's
clock starts after its imports; process wall times, start-up included, are printed too.
* rensa: the bare script: seed shingles (``re.split(r'\\W', text.lower())``, 5-grams joined by
  spaces) per file, ``RMinHash`` + ``RMinHashLSH``, union-find; one process.
* datasketch: the same shingles, ``MinHash.update_batch`` + ``MinHashLSH(params=(25, 10))``; one process.
* datatrove: its four stages (signature, buckets, cluster, filter) with ``LocalPipelineExecutor``,
  ``MinhashConfig(n_grams=5, num_buckets=25, hashes_per_bucket=10)``, ``--workers`` processes.
  Its default English word tokenizer needs spaCy, which this environment does not have, so it
  gets a tokenizer that splits like the seed (cheaper than spaCy: the ratio is conservative).

datasketch and datatrove run on the first ``--max-peer-files`` / ``--max-datatrove-files`` files (rensa: ``--max-rensa-files``)
when the corpus is larger (printed); their MB/s is then compared with StarFlow's on the whole corpus.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ray_tasks.dedup.params import DedupParams  # noqa: E402  (after the repository root is on sys.path)

CFG = DedupParams()
"""The seed's parameters (params.yaml's defaults), given to StarFlow and to every peer."""
NONWORD = re.compile(r"\W")


# --------------------------------------------------------------------------- corpus
def write_corpus(table, folder: Path, parts: int = 2) -> float:
    """Split ``table`` into ``parts`` Parquet files (one per worker); returns MB of content."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    cols = ["repo_name", "path", "content"] + [c for c in ("license_type", "star_events_count", "fork_events_count") if c in table.column_names]
    table = table.select(cols)
    ids = pc.binary_join_element_wise(table.column("repo_name"), table.column("path"), "/")
    table = table.append_column("id", ids)
    n = table.num_rows
    # Cut on repository boundaries so that no peer sees half a repository per worker.
    names = table.column("repo_name").to_pylist()
    cut = n // 2
    while 0 < cut < n and names[cut] == names[cut - 1]:
        cut += 1
    bounds = [(0, cut), (cut, n)] if parts == 2 else [(0, n)]
    for i, (s, e) in enumerate(bounds):
        pq.write_table(table.slice(s, e - s), folder / f"part-{i}.parquet")
    return pc.sum(pc.binary_length(pc.cast(table.column("content"), pa.large_binary()))).as_py() / 1e6


def read_corpus(folder: Path, limit: int | None = None):
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pa.concat_tables([pq.read_table(p) for p in sorted(folder.glob("*.parquet"))])
    return t.slice(0, limit) if limit else t


def _mb(t) -> float:
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.sum(pc.binary_length(pc.cast(t.column("content"), pa.large_binary()))).as_py() / 1e6


def peer_shingles(text: str) -> list[str]:
    """The seed's shingles, as the bare scripts compute them."""
    from benchmarks.near_dedup_corpus import seed_shingles

    return list(seed_shingles(text, CFG.ngram_size, CFG.min_tokens))


def union_find_keep(n: int, pairs) -> list[int]:
    """Plain union-find; keeps the smallest index of each component (peers have no priority columns)."""
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return [i for i in range(n) if find(i) == i]


def write_kept(table, keep, out: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(table.take(pa.array(keep, pa.int64())), out / "kept.parquet")


# --------------------------------------------------------------------------- peers (each in its own process)
def peer_floor(data: Path, out: Path, workers: int, limit: int | None) -> dict:
    import xxhash

    t0 = time.perf_counter()
    t = read_corpus(data, limit)
    content = t.column("content")
    h = [xxhash.xxh3_64_intdigest(c.encode()) for s in range(0, t.num_rows, 4096) for c in content.slice(s, 4096).to_pylist()]
    return {"files": t.num_rows, "mb": _mb(t), "removed": t.num_rows - len(set(h)), "seconds": time.perf_counter() - t0}


def _starflow(data: Path, out: Path, workers: int, limit: int | None, executor: str) -> dict:
    """StarFlow's dedup with ``executor`` (auto, ray or local), kept rows and clusters written.

    It reads the Parquet files as the stage does (``ParquetSource``: small columns here, the
    content by the map tasks, row group by row group). ``ray`` starts Ray before the clock (its
    start is reported apart); ``auto`` starts it inside the clock when it decides to use it, as
    ``starflow dedup`` would."""
    from ray_tasks.dedup.source import ParquetSource
    from ray_tasks.dedup.stage import dedup, write_kept
    from ray_tasks.executor import RayParams, wants_ray
    from ray_tasks.tables import write_parquet_atomic

    if limit:
        raise SystemExit("StarFlow always runs on the whole corpus (no --limit)")
    startup = _warm()
    ray_start = _start_ray(workers) if executor == "ray" else 0.0
    t0 = time.perf_counter()
    source = ParquetSource.open(sorted(data.glob("*.parquet")))
    use_ray = wants_ray(RayParams(executor=executor), source.content_bytes(), ray_up=False)
    if use_ray and executor == "auto":
        ray_start = _start_ray(workers)
    r = dedup(source, out / "index", CFG, use_ray=use_ray)
    write_kept(r, out / "kept.parquet")
    write_parquet_atomic(r.clusters, out / "clusters.parquet")
    seconds = time.perf_counter() - t0
    return {"files": source.num_rows, "mb": folder_mb(data), "removed": source.num_rows - r.stats["files_kept"],
            "seconds": seconds, "exact_removed": r.stats["exact_removed"], "near_removed": r.stats["near_removed"],
            "ray": use_ray, "ray_start_s": ray_start, "startup_s": startup}


def folder_mb(folder: Path) -> float:
    """MB of content of every Parquet file in ``folder``, one row group at a time (after a peer's clock:
    counting must not raise the peer's peak memory)."""
    import pyarrow.parquet as pq

    total = 0
    for path in sorted(folder.glob("*.parquet")):
        fh = pq.ParquetFile(path)
        for g in range(fh.num_row_groups):
            total += _mb(fh.read_row_group(g, columns=["content"]))
    return total


def dedup_table(table, index_dir: Path, use_ray: bool):
    """StarFlow's dedup of an in-memory table, written first as the stage's input (one Parquet file)."""
    import pyarrow.parquet as pq

    from ray_tasks.dedup.source import ParquetSource
    from ray_tasks.dedup.stage import dedup

    index_dir = Path(index_dir)
    index_dir.parent.mkdir(parents=True, exist_ok=True)
    path = index_dir.with_name(index_dir.name + ".input.parquet")
    pq.write_table(table, path)
    return dedup(ParquetSource.open([path]), index_dir, CFG, use_ray=use_ray)


def peer_starflow(data: Path, out: Path, workers: int, limit: int | None) -> dict:
    """What ``starflow dedup`` does: the auto executor (Ray only from ``ray.auto_min_mb`` of content), Ray's start counted."""
    return _starflow(data, out, workers, limit, "auto")


def peer_starflow_ray(data: Path, out: Path, workers: int, limit: int | None) -> dict:
    """StarFlow on a local Ray with ``workers`` CPUs whatever the size; Ray's start is reported apart."""
    return _starflow(data, out, workers, limit, "ray")


def peer_starflow_1p(data: Path, out: Path, workers: int, limit: int | None) -> dict:
    """StarFlow without Ray: one process, the same code path (the apples-to-apples row for the bare scripts)."""
    return _starflow(data, out, workers, limit, "local")


def _start_ray(workers: int) -> float:
    """ray.init and the workers up, with their kernels loaded (the one-off cost of a Ray session)."""
    import ray

    from ray_tasks.executor import init_ray

    t0 = time.perf_counter()
    init_ray(_ray_params(workers))
    ray.get([ray.remote(_warm).remote() for _ in range(workers)])
    return time.perf_counter() - t0


def _ray_params(workers: int):
    """A local Ray with ``workers`` CPUs and a 1 GB object store."""
    from ray_tasks.executor import RayParams

    return RayParams(executor="ray", num_cpus=workers, object_store_memory_mb=1024)


def _warm() -> float:
    """Process start-up: the code-point table and the compiled shingling kernels (JIT-compiled and
    cached on disk the first time): about 1.5 s per process, mostly Numba's own. Returns seconds."""
    import pyarrow as pa

    from ray_tasks.dedup.minhash import shingle_hashes

    t0 = time.perf_counter()
    shingle_hashes(pa.array(["warm up the kernels ok"], pa.large_string()), CFG)
    return time.perf_counter() - t0


def peer_rensa(data: Path, out: Path, workers: int, limit: int | None) -> dict:
    from rensa import RMinHash, RMinHashLSH

    t0 = time.perf_counter()
    t = read_corpus(data, limit)
    lsh = RMinHashLSH(CFG.threshold, CFG.num_perm, CFG.bands)
    pairs = []
    for i, text in enumerate(t.column("content").to_pylist()):
        m = RMinHash(CFG.num_perm, CFG.seed)
        m.update(peer_shingles(text))
        pairs += [(i, j) for j in lsh.query(m)]
        lsh.insert(i, m)
    keep = union_find_keep(t.num_rows, pairs)
    write_kept(t, keep, out)
    return {"files": t.num_rows, "mb": _mb(t), "removed": t.num_rows - len(keep), "seconds": time.perf_counter() - t0}


def peer_datasketch(data: Path, out: Path, workers: int, limit: int | None) -> dict:
    from datasketch import MinHash, MinHashLSH

    t0 = time.perf_counter()
    t = read_corpus(data, limit)
    lsh = MinHashLSH(threshold=CFG.threshold, num_perm=CFG.num_perm, params=(CFG.bands, CFG.rows))
    pairs = []
    for i, text in enumerate(t.column("content").to_pylist()):
        m = MinHash(num_perm=CFG.num_perm, seed=CFG.seed)
        m.update_batch([s.encode() for s in peer_shingles(text)])
        pairs += [(i, j) for j in lsh.query(m)]
        lsh.insert(i, m)
    keep = union_find_keep(t.num_rows, pairs)
    write_kept(t, keep, out)
    return {"files": t.num_rows, "mb": _mb(t), "removed": t.num_rows - len(keep), "seconds": time.perf_counter() - t0}


def peer_datatrove(data: Path, out: Path, workers: int, limit: int | None) -> dict:
    import pyarrow.parquet as pq
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                                  MinhashDedupFilter, MinhashDedupSignature)
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter
    from datatrove.utils.hashing import HashConfig
    from datatrove.utils.word_tokenizers import WordTokenizer

    class SeedSplit(WordTokenizer):
        """The seed's split on \\W (datatrove's default English tokenizer needs spaCy)."""

        def word_tokenize(self, text):
            return NONWORD.split(text)

        def sent_tokenize(self, text):
            return [text]

        def span_tokenize(self, text):
            return [(0, len(text))]

    src = data
    if limit:  # the subset is written before the clock starts
        src = out / "input"
        src.mkdir()
        t = read_corpus(data, limit)
        half = t.num_rows // 2
        pq.write_table(t.slice(0, half), src / "part-0.parquet")
        pq.write_table(t.slice(half), src / "part-1.parquet")
    files = len(list(src.glob("*.parquet")))
    t0 = time.perf_counter()
    cfg = MinhashConfig(n_grams=CFG.ngram_size, num_buckets=CFG.bands, hashes_per_bucket=CFG.rows, seed=CFG.seed,
                        hash_config=HashConfig(precision=64, hash_fc="xxhash"))
    reader = lambda: ParquetReader(str(src), text_key="content", id_key="id")  # noqa: E731
    logs = out / "logs"
    signer = MinhashDedupSignature(str(out / "sigs"), config=cfg, language=SeedSplit())
    signer._hash_func = xxhash64_of_str  # datatrove 0.10.1 passes str, which the installed xxhash refuses
    s1 = LocalPipelineExecutor([reader(), signer], tasks=files, workers=workers, logging_dir=str(logs / "1"), start_method="fork")
    s2 = LocalPipelineExecutor([MinhashDedupBuckets(str(out / "sigs"), str(out / "buckets"), config=cfg)],
                               tasks=cfg.num_buckets, workers=workers, logging_dir=str(logs / "2"), depends=s1,
                               start_method="fork")
    s3 = LocalPipelineExecutor([MinhashDedupCluster(str(out / "buckets"), str(out / "remove"), config=cfg)],
                               tasks=1, logging_dir=str(logs / "3"), depends=s2, start_method="fork")
    s4 = LocalPipelineExecutor([reader(), MinhashDedupFilter(str(out / "remove")), ParquetWriter(str(out / "kept"))],
                               tasks=files, workers=workers, logging_dir=str(logs / "4"), depends=s3, start_method="fork")
    s4.run()
    seconds = time.perf_counter() - t0
    n_in = sum(pq.read_metadata(p).num_rows for p in src.glob("*.parquet"))
    kept = sum(pq.read_metadata(p).num_rows for p in (out / "kept").rglob("*.parquet"))
    return {"files": n_in, "mb": folder_mb(src), "removed": n_in - kept, "seconds": seconds}


def xxhash64_of_str(data: str | bytes) -> int:
    import xxhash

    return xxhash.xxh64_intdigest(data.encode() if isinstance(data, str) else data)


PEERS = {"floor": peer_floor, "starflow": peer_starflow, "starflow-ray": peer_starflow_ray, "starflow-1p": peer_starflow_1p, "rensa": peer_rensa, "datasketch": peer_datasketch,
         "datatrove": peer_datatrove}


def run_peer(name: str, data: Path, workers: int, limit: int | None, mb_total: float, n_total: int) -> dict:
    """Run one peer in a fresh process; wall time, peak RSS of its process tree."""
    import psutil

    out = Path(tempfile.mkdtemp(prefix=f"dedup-{name}-"))
    cmd = [sys.executable, __file__, "--peer", name, "--data", str(data), "--out", str(out), "--workers", str(workers)]
    if limit:
        cmd += ["--limit", str(limit)]
    env = {**os.environ, "RAY_DEDUP_LOGS": "1", "LOGURU_LEVEL": "WARNING", "TQDM_DISABLE": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(out / "stderr.log", "w"), text=True, env=env, cwd=ROOT)
    peak = peak_pss = 0
    cpu: dict[int, float] = {}  # pid -> user+system seconds, last sample while alive
    stop = threading.Event()

    def sample():
        nonlocal peak, peak_pss
        p = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                tree = [p] + p.children(recursive=True)
                peak = max(peak, sum(_rss(c) for c in tree))
                peak_pss = max(peak_pss, sum(_pss(c) for c in tree))
                for c in tree:
                    try:
                        t = c.cpu_times()
                        cpu[c.pid] = t.user + t.system
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            stop.wait(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    stdout, _ = proc.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    th.join()
    if proc.returncode != 0:
        tail = (out / "stderr.log").read_text()[-3000:]
        raise SystemExit(f"peer {name} failed (rc {proc.returncode}):\n{tail}")
    res = json.loads(stdout.strip().splitlines()[-1])
    shutil.rmtree(out, ignore_errors=True)
    files, mb = res["files"], res["mb"]
    seconds = res["seconds"]
    return {"peer": name, **res, "mb": mb, "wall_s": wall, "files_per_s": files / seconds,
            "mb_per_s": mb / seconds, "peak_rss_mb": peak / 2**20, "peak_pss_mb": peak_pss / 2**20,
            "cpu_s": sum(cpu.values())}


def median_run(runs: list[dict]) -> dict:
    """The run with the median time (its own figures), with the highest peak RSS of all runs."""
    runs = sorted(runs, key=lambda r: r["seconds"])
    return {**runs[len(runs) // 2], "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            "peak_pss_mb": max(r["peak_pss_mb"] for r in runs)}


def _rss(p) -> int:
    try:
        return p.memory_info().rss
    except Exception:
        return 0


def _pss(p) -> int:
    """Proportional set size: shared pages (Ray's object store, libraries) split among the processes
    that map them, so that a tree's sum counts them once (RSS counts them in every process)."""
    try:
        return p.memory_full_info().pss
    except Exception:
        return 0


# --------------------------------------------------------------------------- reports
def print_table(rows: list[dict], title: str) -> None:
    sf = next(r for r in rows if r["peer"] == "starflow")
    print(f"\n{title}")
    print(f"{'peer':<13}{'files':>9}{'MB':>9}{'s':>9}{'files/s':>10}{'MB/s':>8}{'peak RSS MB':>12}{'removed':>9}"
          f"{'StarFlow x':>12}{'CPU s':>9}{'MB/CPU-s':>10}")
    for r in rows:
        ratio = sf["mb_per_s"] / r["mb_per_s"]
        print(f"{r['peer']:<13}{r['files']:>9}{r['mb']:>9.1f}{r['seconds']:>9.2f}{r['files_per_s']:>10.0f}"
              f"{r['mb_per_s']:>8.2f}{r['peak_rss_mb']:>12.0f}{r['removed']:>9}{ratio:>12.2f}"
              f"{r['cpu_s']:>9.1f}{r['mb'] / max(r['cpu_s'], 1e-9):>10.2f}")
    print("(s: from reading the Parquet to writing the kept rows, in the peer's process after its imports; "
          "StarFlow x = StarFlow MB/s / peer MB/s; CPU s: user+system of the whole process tree over the whole "
          "process, start-up included, sampled every 50 ms: less sensitive to other load on the machine)")
    print(f"StarFlow ran {'on Ray' if sf['ray'] else 'in one process'} (auto executor); its process start-up "
          f"(imports excluded: code-point table, Numba kernels) took {sf['startup_s']:.1f} s. Process wall times, "
          "start-up and imports included: " + ", ".join(f"{r['peer']} {r['wall_s']:.1f} s" for r in rows))
    rr = next((r for r in rows if r["peer"] == "starflow-ray"), None)
    if rr:
        print(f"starflow-ray: Ray's start (ray.init + {rr.get('workers', 2)} workers up) is apart, {rr['ray_start_s']:.1f} s; "
              f"counting it, starflow-ray runs at {rr['mb'] / (rr['seconds'] + rr['ray_start_s']):.2f} MB/s")
    for name in ("datatrove", "rensa"):
        peer = next((r for r in rows if r["peer"] == name), None)
        if peer:
            print(f"StarFlow vs {name}: {sf['mb_per_s'] / peer['mb_per_s']:.2f}x MB/s"
                  + (f"; starflow-ray {rr['mb_per_s'] / peer['mb_per_s']:.2f}x, with Ray's start "
                     f"{rr['mb'] / (rr['seconds'] + rr['ray_start_s']) / peer['mb_per_s']:.2f}x" if rr else ""))
    print(f"StarFlow removed {sf['exact_removed']} exact (repositories and files) + {sf['near_removed']} near duplicates")


def quality(n_pairs: int) -> None:
    import numpy as np
    import pyarrow as pa

    from benchmarks.near_dedup_corpus import exact_jaccard, jaccard_pairs, read_sources

    pairs = jaccard_pairs(read_sources(limit=max(4 * n_pairs, 1000), max_bytes=32 * 1024), n_pairs, seed=3, rates=(0.0, 1.0))
    rows = []
    for i, (a, b) in enumerate(pairs):
        rows += [dict(repo_name=f"p{i:05d}a", path="f.py", content=a), dict(repo_name=f"p{i:05d}b", path="f.py", content=b)]
    r = dedup_table(pa.Table.from_pylist(rows), Path(tempfile.mkdtemp()) / "index", use_ray=False)
    cid = dict(zip(r.clusters.column("repo_name").to_pylist(), r.clusters.column("cluster_id").to_pylist()))
    j = np.array([exact_jaccard(a, b, CFG) for a, b in pairs])
    dup = np.array([cid.get(f"p{i:05d}a", -1) == cid.get(f"p{i:05d}b", -2) for i in range(len(pairs))])
    print(f"\nQuality: {len(pairs)} (real file, mutated copy) pairs; decision = same cluster; exact = seed 5-gram Jaccard")
    print(f"{'exact J':<12}{'pairs':>7}{'merged':>9}")
    for lo, hi in [(0, .5), (.5, .6), (.6, .7), (.7, .8), (.8, .85), (.85, .9), (.9, .95), (.95, 1.0001)]:
        m = (j >= lo) & (j < hi)
        print(f"[{lo:.2f},{min(hi, 1):.2f}{')' if hi <= 1 else ']':<2}{m.sum():>7}{dup[m].mean() if m.any() else float('nan'):>9.3f}")
    pos, neg = j >= 0.8, j <= 0.6
    tp, fp, fn = (dup & pos).sum(), (dup & neg).sum(), (~dup & pos).sum()
    print(f"J >= 0.8 vs J <= 0.6: precision {tp / max(tp + fp, 1):.4f}, recall {tp / max(tp + fn, 1):.4f} "
          f"({pos.sum()} positive, {neg.sum()} negative pairs)")


def incremental(table, workers: int) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    from ray_tasks.executor import init_ray

    init_ray(_ray_params(workers))
    repos = sorted(set(table.column("repo_name").to_pylist()))
    new_repos = set(repos[::10])
    is_new = pa.array([r in new_repos for r in table.column("repo_name").to_pylist()])
    old, new = table.filter(pc.invert(is_new)), table.filter(is_new)
    d = Path(tempfile.mkdtemp())
    dedup_table(table.slice(0, min(200, table.num_rows)), d / "warm", use_ray=True)  # workers up
    t0 = time.perf_counter()
    full = dedup_table(table, d / "full", use_ray=True)
    t_full = time.perf_counter() - t0
    first = dedup_table(old, d / "inc", use_ray=True)
    t0 = time.perf_counter()
    second = dedup_table(new, d / "inc", use_ray=True)
    t_inc = time.perf_counter() - t0
    kept = lambda r: set(zip(r.kept_names.column("repo_name").to_pylist(), r.kept_names.column("path").to_pylist()))  # noqa: E731
    sup = set(zip(second.superseded.column("repo_name").to_pylist(), second.superseded.column("path").to_pylist()))
    same = ((kept(first) - sup) | kept(second)) == kept(full)
    print(f"\nIncremental: index of {old.num_rows} files ({len(repos) - len(new_repos)} repos), add {new.num_rows} files "
          f"({len(new_repos)} repos): {t_inc:.2f} s vs full re-run on {table.num_rows} files {t_full:.2f} s "
          f"= {t_inc / t_full:.1%}; same kept set as the full re-run: {same}; superseded in index: {second.superseded.num_rows}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=0, help="synthetic corpus of N files (0: the default corpus)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--peers", default="floor,starflow,starflow-ray,starflow-1p,rensa,datasketch,datatrove")
    ap.add_argument("--max-peer-files", type=int, default=3000, help="datasketch runs on at most this many files")
    ap.add_argument("--max-datatrove-files", type=int, default=3000, help="datatrove runs on at most this many files")
    ap.add_argument("--max-rensa-files", type=int, default=20000, help="the bare rensa script runs on at most this many files")
    ap.add_argument("--scaling", type=int, default=0, help="also time StarFlow on a synthetic corpus of this many files")
    ap.add_argument("--quality-pairs", type=int, default=0, help="precision/recall table on this many real-code pairs")
    ap.add_argument("--incremental", action="store_true", help="time adding 10%% new repositories to an index")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=1, help="rounds over all peers; the median run of each is reported")
    # internal: one peer in this process
    ap.add_argument("--peer")
    ap.add_argument("--data", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--limit", type=int)
    args = ap.parse_args()
    if args.peer:
        res = PEERS[args.peer](args.data, args.out, args.workers, args.limit)
        print(json.dumps(res))
        return

    from tqdm import tqdm

    def corpus(n: int):
        import pyarrow.parquet as pq

        from benchmarks.near_dedup_corpus import make_corpus, read_sources

        if n == 0:
            return pq.read_table(ROOT / "data" / "ingest" / "files"), "default corpus (data/ingest/files/)"
        return make_corpus(read_sources(max_bytes=16 * 1024), n, seed=args.seed), f"synthetic corpus of {n} files (seed {args.seed})"

    table, label = corpus(args.files)
    work = Path(tempfile.mkdtemp(prefix="dedup-bench-"))
    mb = write_corpus(table, work / "data")
    n = table.num_rows
    print(f"{label}: {n} files, {mb:.1f} MB, {args.workers} workers")
    peers = [p for p in args.peers.split(",") if p]
    runs: dict[str, list[dict]] = {p: [] for p in peers}
    # Rounds interleave the peers, so that load from other processes hits them alike; medians are reported.
    for rnd, name in (bar := tqdm([(r, p) for r in range(args.repeat) for p in peers], desc="runs", file=sys.stderr)):
        bar.set_postfix_str(f"{name} (round {rnd + 1})")
        cap = {"datasketch": args.max_peer_files, "datatrove": args.max_datatrove_files, "rensa": args.max_rensa_files}.get(name)
        limit = cap if cap and n > cap else None
        runs[name].append(run_peer(name, work / "data", args.workers, limit, mb, n))
        if limit and rnd == 0:
            print(f"note: {name} ran on the first {limit} of {n} files")
    rows = [median_run(runs[p]) for p in peers]
    if args.repeat > 1:
        print(f"medians of {args.repeat} rounds; StarFlow seconds per round: "
              + ", ".join(f"{r['seconds']:.2f}" for r in runs.get("starflow", [])))
    if any(r["peer"] == "starflow" for r in rows):
        print_table(rows, f"Throughput on the {label}")
    if args.scaling:
        big, big_label = corpus(args.scaling)
        mb_big = write_corpus(big, work / "big")
        small = next(r for r in rows if r["peer"] == "starflow")
        r = median_run([run_peer("starflow", work / "big", args.workers, None, mb_big, big.num_rows)
                        for _ in range(args.repeat)])
        where = f"on Ray, {args.workers} workers" if r["ray"] else "auto executor: one process"
        print(f"\nScaling (StarFlow, {where}): {small['files']} files / {small['mb']:.0f} MB in "
              f"{small['seconds']:.2f} s -> {r['files']} files / {r['mb']:.0f} MB in {r['seconds']:.2f} s: "
              f"{r['files'] / small['files']:.1f}x files, {r['mb'] / small['mb']:.1f}x MB, {r['seconds'] / small['seconds']:.1f}x time "
              f"({small['mb_per_s']:.2f} -> {r['mb_per_s']:.2f} MB/s; peak RSS {small['peak_rss_mb']:.0f} -> {r['peak_rss_mb']:.0f} MB)")
    if args.incremental:
        incremental(table, args.workers)
    if args.quality_pairs:
        quality(args.quality_pairs)


if __name__ == "__main__":
    main()
