"""Attribution index: build time, size against the data, recall, false positives, query latency.

    python benchmarks/attribution.py --curated data/curate/files
    python benchmarks/attribution.py --synthetic 100000      # benchmarks/near_dedup_corpus.py's generator

The peer is the exact answer: a Python ``set`` of the same strided windows (what the Bloom filter
approximates) for the false-positive rate and the memory it would take, and a linear ``str.find``
scan of every training file for the query latency. Never-ingested files are the ``.py`` files of
installed packages that are not in the corpus (their windows that the exact set holds, real shared
text such as licence headers, are not counted as false positives).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.near_dedup_corpus import make_corpus, read_sources  # noqa: E402
from ray_tasks.attribution import portrait  # noqa: E402
from ray_tasks.attribution.params import AttributionParams  # noqa: E402
from ray_tasks.attribution.stage import build  # noqa: E402
from ray_tasks.attribution.trace import Attribution  # noqa: E402


def edit_fifth(text: str, rng: random.Random) -> str:
    lines = text.splitlines(keepends=True)
    for i in rng.sample(range(len(lines)), max(1, len(lines) // 5)):
        lines[i] = f"# edited {rng.randrange(10**9)}\n"
    return "".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--curated", type=Path)
    ap.add_argument("--synthetic", type=int, default=0)
    ap.add_argument("--recall-sample", type=int, default=0, help="files to trace for recall (0: all)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--scan-queries", type=int, default=20, help="queries the linear-scan peer answers (it is slow)")
    args = ap.parse_args()
    params = AttributionParams()
    tmp = Path(tempfile.mkdtemp())
    if args.synthetic:
        table = make_corpus(read_sources(), n_files=args.synthetic, seed=0)
        if "length_bytes" not in table.column_names:
            table = table.append_column("length_bytes", pc.binary_length(table["content"]).cast(pa.int64()))
        if "sha256" not in table.column_names:
            table = table.append_column("sha256", pa.array([str(i) for i in range(table.num_rows)]))
        pq.write_table(table, tmp / "files.parquet")
        files_path = tmp / "files.parquet"
    else:
        files_path = args.curated
    stats = build(files_path, tmp / "index", params)
    print(f"build: {stats['files']} files, {stats['content_bytes'] / 2**20:.1f} MB, {stats['windows']} windows "
          f"in {stats['build_s']:.2f} s ({stats['content_bytes'] / 2**20 / stats['build_s']:.1f} MB/s)")
    print(f"index: portrait {stats['portrait_bytes'] / 2**20:.2f} MB, full text {stats['fulltext_bytes'] / 2**20:.2f} MB, "
          f"{stats['index_to_data_ratio']:.3f} of the data")
    att = Attribution.open(tmp / "index", params)
    rows = pq.read_table(files_path, columns=["repo_name", "path", "content"]).to_pylist()
    rng = random.Random(0)
    sample = rows if not args.recall_sample else rng.sample(rows, min(args.recall_sample, len(rows)))
    found = sum(any((f["repo_name"], f["path"]) == (r["repo_name"], r["path"]) for f in att.trace(r["content"])["files"])
                or not r["content"].strip() for r in sample)
    print(f"recall: {found}/{len(sample)} files found with their repository and path = {found / len(sample):.4f}")
    big = [r for r in sample if r["content"].count("\n") >= 20]
    edited = sum(any(f["path"] == r["path"] and f["repo_name"] == r["repo_name"]
                     for f in att.trace(edit_fifth(r["content"], rng))["files"]) for r in big)
    print(f"20% of lines edited: {edited}/{len(big)} still found with their source")

    exact = {w for r in rows for w in portrait.indexed_windows(r["content"], params.window_chars, params.stride_chars)}
    contents = {r["content"] for r in rows}
    outside = [t for t in read_sources(limit=400) if t not in contents][:300]
    probes = [w for t in outside for w in portrait.indexed_windows(t, params.window_chars, 1)]
    negatives = [w for w in probes if w not in exact]
    fp = sum(w in att.portrait for w in negatives)
    print(f"false positives: {fp}/{len(negatives)} windows of never-indexed text = {fp / len(negatives):.5f} "
          f"(configured {params.false_positive_rate}; ratio {fp / len(negatives) / params.false_positive_rate:.2f})")
    unseen = [t for t in outside if not any(w in exact for w in portrait.indexed_windows(t, params.window_chars, 1))]
    matched = sum(bool(att.trace(t)["files"]) for t in unseen)
    print(f"second pass on {len(unseen)} files sharing no indexed window with the set: {matched} reported a match")
    set_mb = sum(sys.getsizeof(w) for w in exact) / 2**20 + sys.getsizeof(exact) / 2**20
    print(f"peer exact set of windows: {set_mb:.1f} MB in memory vs portrait {stats['portrait_bytes'] / 2**20:.2f} MB")

    queries = [r["content"][:2000] for r in rng.sample(rows, min(args.queries, len(rows)))]
    t0 = time.perf_counter()
    for q in queries:
        att.trace(q)
    ours = (time.perf_counter() - t0) / len(queries)
    contents = [r["content"] for r in rows]
    t0 = time.perf_counter()
    for q in queries[:args.scan_queries]:
        [c.find(q[i:i + 50]) for i in range(0, len(q) - 49, 50) for c in contents]
    scan = (time.perf_counter() - t0) / min(args.scan_queries, len(queries))
    print(f"query (2,000 chars): {ours * 1000:.1f} ms per trace; linear str.find scan {scan * 1000:.1f} ms "
          f"({scan / ours:.1f}x slower)")


if __name__ == "__main__":
    main()
