"""Curation throughput: StarFlow's language + filter steps on Ray Data vs a datatrove pipeline of the same filters.

Same files, same rules, same 2 workers, in one run:
- StarFlow: Parquet -> Ray Data ``map_batches(apply_filters)`` (Arrow-vectorised
  statistics, then the filters of ``build_filters``) -> Parquet;
- datatrove: ``ParquetReader`` -> ``LambdaFilter``s with the same rules, written
  the way a datatrove user writes them (per document, in Python), given StarFlow's
  own ``detect_language`` so that both sides detect languages identically ->
  ``ParquetWriter``, on ``LocalPipelineExecutor(tasks=2, workers=2)``.
Both include reading and writing Parquet and starting their executor. The kept
sets are compared so that the speed comparison is between equal work.

    python benchmarks/curation.py [--files 20000]
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from ray_tasks.curate.stage import build_filters  # noqa: E402
from ray_tasks.curate.filters import DATA_LANGUAGES, ENCODED_PATTERNS, LINE_LENGTH_EXEMPT, apply_filters  # noqa: E402
from ray_tasks.language import detect_language  # noqa: E402
from ray_tasks.curate.provenance import has_generated_marker, is_generated  # noqa: E402

WORKERS = 2


def build_corpus(n_files: int, out: Path, shards: int = 8) -> tuple[int, int]:
    """Real text files from this environment's site-packages, as Parquet shards."""
    root = Path(sysconfig.get_paths()["purelib"])
    rows = []
    for path in sorted(root.rglob("*")):
        if len(rows) >= n_files:
            break
        if not path.is_file() or path.suffix in (".pyc", ".so") or path.stat().st_size > 1 << 20:
            continue
        data = path.read_bytes()
        if b"\x00" in data:
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        rel = path.relative_to(root).as_posix()
        rows.append({"id": rel, "path": rel, "repo_name": rel.split("/")[0], "content": text,
                     "license_type": "permissive", "length_bytes": len(data)})
    out.mkdir(parents=True, exist_ok=True)
    per = -(-len(rows) // shards)
    for i in range(shards):
        pq.write_table(pa.Table.from_pylist(rows[i * per:(i + 1) * per]), out / f"part-{i:02d}.parquet")
    return len(rows), sum(r["length_bytes"] for r in rows)


def run_starflow(src: Path, dst: Path) -> tuple[float, float, set[str]]:
    """(seconds in all, seconds of it starting Ray, kept ids)."""
    import ray

    from ray_tasks.executor import init_ray

    t0 = time.perf_counter()
    init_ray(None, WORKERS, 512)
    startup = time.perf_counter() - t0
    filters = build_filters(["permissive", "no_license"], True)
    ds = ray.data.read_parquet(str(src))
    ds = ds.map_batches(apply_filters, batch_format="pyarrow", batch_size=512, fn_kwargs={"filters": filters})
    ds = ds.map_batches(_kept_only, batch_format="pyarrow")
    ds.write_parquet(str(dst))
    elapsed = time.perf_counter() - t0
    kept = set(pq.read_table(dst, columns=["id"]).column("id").to_pylist())
    ray.shutdown()
    return elapsed, startup, kept


def _kept_only(batch: pa.Table) -> pa.Table:
    return batch.filter(batch.column("keep"))


# ---- datatrove: the same rules, one document at a time ---------------------------------------
_ENCODED = [re.compile(p) for p in ENCODED_PATTERNS.values()]


def _lang(doc) -> bool:
    doc.metadata["language"] = detect_language(doc.metadata["path"], doc.text)
    return doc.metadata["language"] is not None


def _autogen(doc) -> bool:
    return not (is_generated(doc.metadata["path"], doc.text) or has_generated_marker(doc.text, 5))


def _lines(doc) -> bool:
    lengths = [len(line) for line in doc.text.split("\n")]
    if len(lengths) > 100_000:
        return False
    if doc.metadata["language"] in LINE_LENGTH_EXEMPT:
        return max(lengths) <= 100_000
    return max(lengths) <= 1000 and (len(doc.text) - len(lengths) + 1) / len(lengths) <= 100


def _alpha(doc) -> bool:
    return bool(doc.text) and sum(c.isalpha() for c in doc.text) / len(doc.text) >= 0.25


def _encoded(doc) -> bool:
    matched = 0
    for pattern in _ENCODED:
        for m in pattern.finditer(doc.text):
            if m.end() - m.start() > 1024:
                return False
            matched += m.end() - m.start()
    return matched <= 0.5 * len(doc.text)


def _data_size(doc) -> bool:
    return not (doc.metadata["language"] in DATA_LANGUAGES and doc.text.count("\n") + 1 > 512)


def _text_name(doc) -> bool:
    name = Path(doc.metadata["path"]).name.lower()
    return doc.metadata["language"] != "Text" or "requirement" in name or Path(name).stem in (
        "readme", "notes", "todo", "description", "cmakelists")


def _html(doc) -> bool:
    if doc.metadata["language"] != "HTML":
        return True
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(doc.text, "html.parser")
    for tag in soup(["script", "style"]):
        tag.decompose()
    text = soup.get_text()
    return len(text) >= 100 and len(text) >= 0.2 * len(doc.text)


def run_datatrove(src: Path, dst: Path, logs: Path) -> tuple[float, set[str]]:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.filters import LambdaFilter
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter

    pipeline = [ParquetReader(str(src), text_key="content", id_key="id")]
    pipeline += [LambdaFilter(f) for f in (_lang, _autogen, _lines, _alpha, _encoded, _data_size, _text_name, _html)]
    pipeline.append(ParquetWriter(str(dst)))
    t0 = time.perf_counter()
    LocalPipelineExecutor(pipeline=pipeline, tasks=WORKERS, workers=WORKERS, logging_dir=str(logs)).run()
    elapsed = time.perf_counter() - t0
    kept = set(pq.read_table(dst, columns=["id"]).column("id").to_pylist())
    return elapsed, kept


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=20_000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-curation-"))
    try:
        n, size = build_corpus(args.files, tmp / "in")
        print(f"corpus: {n:,} real files from site-packages, {size / 1e6:.1f} MB, {WORKERS} workers")
        t_dt, kept_dt = run_datatrove(tmp / "in", tmp / "out-datatrove", tmp / "logs")
        t_sf, t_start, kept_sf = run_starflow(tmp / "in", tmp / "out-starflow")
        same = len(kept_sf & kept_dt) / max(len(kept_sf | kept_dt), 1)
        print(f"kept: StarFlow {len(kept_sf):,}, datatrove {len(kept_dt):,}; same kept set: {same:.2%}")
        print(f"{'':12s}{'seconds':>10s}{'files/s':>12s}{'MB/s':>8s}")
        for name, t in (("StarFlow", t_sf), ("datatrove", t_dt)):
            print(f"{name:12s}{t:10.1f}{n / t:12,.0f}{size / 1e6 / t:8.2f}")
        print(f"ratio (StarFlow files/s / datatrove files/s): {t_dt / t_sf:.2f}x end to end; "
              f"{t_dt / (t_sf - t_start):.2f}x with Ray already running (its start took {t_start:.1f} s)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
