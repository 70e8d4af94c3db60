"""Dedup's peak memory at 1x and Nx of a corpus of real code, beside datatrove's MinHash dedup.

    .venv/bin/python benchmarks/dedup_memory.py                       # 120 MB of code, and 10x: 1.2 GB
    .venv/bin/python benchmarks/dedup_memory.py --base-mb 30 --scale 10 --datatrove-scales 1,10

The 1x corpus is real files: every code file (``.py .pyi .c .h .cc .cpp .hpp .rs .js .ts``,
under 1 MB, UTF-8) of this interpreter's standard library, ``/usr/lib/python3*`` and the
environment's site-packages, in path order, until ``--base-mb``; a repository is a top-level
folder. The Nx corpus is N copies of it: copy 0 as is, copy k with ``#ck`` at every line end
and ``ck`` after every ``(``, ``.`` and ``, `` under repositories renamed ``~ck``. A copy keeps the
corpus's own duplicate structure (identical files stay identical, near copies near), while two
copies of one file are far apart (5-gram Jaccard about 0.3-0.5, under the 0.7 threshold), so
dedup's work and output grow N times. Both corpora are two Parquet files (one per worker, for
datatrove's tasks) in row groups of about ``--row-group-mb`` of content (ingest's default), with ``sha256`` and
``length_bytes`` as ingest writes them.

Each peer runs in its own process through ``benchmarks/dedup.py``'s ``run_peer``: the peak RSS
is the sum over its process tree (Ray's and datatrove's workers included), sampled every
50 ms. Shared memory (Ray's object store, libraries) is counted in RSS once per process that maps
it, so the Ray figures overstate it; PSS (shared pages split among their processes) is printed
beside it. The machine is shared: read the ratios of peers of the same run.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.dedup import run_peer  # noqa: E402  (after the repository root is on sys.path)
from ray_tasks.ingest.params import IngestParams  # noqa: E402

EXTENSIONS = {".py", ".pyi", ".c", ".h", ".cc", ".cpp", ".hpp", ".rs", ".js", ".ts"}


def code_roots() -> list[Path]:
    """This interpreter's standard library, the system's Python folders and site-packages."""
    roots = [Path(sysconfig.get_paths()["stdlib"]), *sorted(Path("/usr/lib").glob("python3*")),
             Path(sysconfig.get_paths()["purelib"])]
    seen, out = set(), []
    for r in roots:
        if r.is_dir() and r.resolve() not in seen:
            seen.add(r.resolve())
            out.append(r)
    return out


def real_files(limit_mb: float) -> list[tuple[str, str, str]]:
    """(repo_name, path, content) of real code files, in path order, until ``limit_mb`` of content."""
    rows, total = [], 0
    for root in code_roots():
        for p in sorted(root.rglob("*")):
            if p.suffix not in EXTENSIONS or not p.is_file() or p.stat().st_size > 2**20:
                continue
            try:
                text = p.read_text("utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            rel = p.relative_to(root)
            repo = f"{root.name}/{rel.parts[0]}" if len(rel.parts) > 1 else f"{root.name}/_"
            rows.append((repo, str(rel), text))
            total += len(text.encode())
            if total >= limit_mb * 1e6:
                return rows
    return rows


def relabel(text: str, k: int) -> str:
    """Copy ``k`` of a file: a tag at line ends and after ``(``, ``.`` and ``, `` breaks most 5-grams against other copies."""
    if k == 0:
        return text
    return text.replace("\n", f" #c{k}\n").replace("(", f"(c{k} ").replace(".", f".c{k}").replace(", ", f", c{k} ")


def write_corpus(rows: list[tuple[str, str, str]], copies: int, folder: Path, row_group_mb: float) -> tuple[int, float]:
    """``copies`` copies of ``rows`` as two Parquet files (copies split at the middle row), streamed in
    row groups of about ``row_group_mb``; returns (files, MB of content)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("repo_name", pa.string()), ("path", pa.string()), ("content", pa.large_string()),
                        ("length_bytes", pa.int64()), ("sha256", pa.string()), ("id", pa.string())])
    total_rows, total_bytes, half = copies * len(rows), 0, copies * len(rows) // 2
    writers = [pq.ParquetWriter(folder / f"part-{i}.parquet", schema, compression="zstd") for i in range(2)]
    buf: list[dict] = []
    size, n = 0, 0

    def flush(w):
        nonlocal buf, size
        if buf:
            w.write_table(pa.Table.from_pylist(buf, schema=schema))
        buf, size = [], 0

    for k in range(copies):
        for repo, path, text in rows:
            if n == half:
                flush(writers[0])
            content = relabel(text, k)
            data = content.encode()
            repo_k = repo if k == 0 else f"{repo}~c{k}"
            buf.append(dict(repo_name=repo_k, path=path, content=content, length_bytes=len(data),
                            sha256=hashlib.sha256(data).hexdigest(), id=f"{repo_k}/{path}"))
            size += len(data)
            total_bytes += len(data)
            n += 1
            if size >= row_group_mb * 1e6:
                flush(writers[0 if n <= half else 1])
    flush(writers[1])
    for w in writers:
        w.close()
    return total_rows, total_bytes / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-mb", type=float, default=120, help="MB of real code in the 1x corpus")
    ap.add_argument("--scale", type=int, default=10, help="copies in the large corpus")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--row-group-mb", type=float, default=IngestParams().row_group_bytes / 1e6,
                    help="content per row group (default: ingest's row_group_bytes)")
    ap.add_argument("--peers", default="starflow-1p,starflow-ray,datatrove")
    ap.add_argument("--datatrove-scales", default="1", help="corpus sizes (1 and/or the --scale) datatrove runs on")
    args = ap.parse_args()

    rows = real_files(args.base_mb)
    work = Path(tempfile.mkdtemp(prefix="dedup-memory-"))
    sizes = {1: write_corpus(rows, 1, work / "x1", args.row_group_mb)}
    sizes[args.scale] = write_corpus(rows, args.scale, work / f"x{args.scale}", args.row_group_mb)
    del rows
    dt_scales = {int(s) for s in args.datatrove_scales.split(",") if s}
    results: dict[tuple[str, int], dict] = {}
    for scale, (n, mb) in sizes.items():
        print(f"{scale}x: {n} files, {mb:.0f} MB of code, {args.workers} workers", flush=True)
        for peer in args.peers.split(","):
            if peer == "datatrove" and scale not in dt_scales:
                continue
            r = run_peer(peer, work / f"x{scale}", args.workers, None, mb, n)
            results[(peer, scale)] = r
            print(f"  {peer:<13} {r['seconds']:8.1f} s {r['mb_per_s']:7.2f} MB/s  peak RSS {r['peak_rss_mb']:7.0f} MB "
                  f"(PSS {r['peak_pss_mb']:.0f} MB)  CPU {r['cpu_s']:.0f} s  removed {r['removed']}", flush=True)
    big = args.scale
    print(f"\nPeak RSS of the process tree, {big}x / 1x (target <= 1.3):")
    for peer in args.peers.split(","):
        if (peer, 1) in results and (peer, big) in results:
            print(f"  {peer:<13} {results[(peer, 1)]['peak_rss_mb']:.0f} -> {results[(peer, big)]['peak_rss_mb']:.0f} MB: "
                  f"{results[(peer, big)]['peak_rss_mb'] / results[(peer, 1)]['peak_rss_mb']:.2f}x; time "
                  f"{results[(peer, big)]['seconds'] / results[(peer, 1)]['seconds']:.1f}x for {big}x the data")
    for scale in sorted(sizes):
        dt = results.get(("datatrove", scale))
        for peer in ("starflow-1p", "starflow-ray"):
            sf = results.get((peer, scale))
            if dt and sf:
                print(f"{scale}x: {peer} vs datatrove ({args.workers} workers): {sf['mb_per_s'] / dt['mb_per_s']:.2f}x MB/s, "
                      f"peak RSS {sf['peak_rss_mb']:.0f} vs {dt['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
