"""Language labels against go-enry on real files, and the language step's cost inside curate.

Peer: go-enry itself (the compiled library of ``enry-python``), called on each file's raw bytes
as The Stack v2 did (``enry.get_language(path, content)``). StarFlow's label is what the curate
stage writes: the file decoded as ingest decodes it, then ``filters.annotate``. The previous
detector (pygments' registry, ``git show HEAD~N:ray_tasks/language.py``) runs in the same process
for comparison.

Corpus: files installed here (site-packages, the standard library, /usr/include, Vim and Perl
runtime files, /usr/share/doc, X11 data), up to ``--per-root`` from each root, shuffled with a
fixed seed; binaries and files over 1 MiB are left out.

Speed: ``curate()`` on the default corpus (``data/dedup/files``), the previous
language and provenance modules swapped in for the old run, alternated ``--rounds`` times
(best of each); then the language step's share (go-enry's three calls per file) of curate's
time there and on a ``--big``-file corpus built from the collected files.

    python benchmarks/languages.py [--per-root 6000] [--rounds 5] [--big 100000] [--old-rev HEAD]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import enry  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from ray_tasks import language  # noqa: E402
from ray_tasks.curate import filters  # noqa: E402
from ray_tasks.curate.params import CurateParams  # noqa: E402
from ray_tasks.curate.stage import curate  # noqa: E402
from ray_tasks.ingest.sources import RawFile  # noqa: E402
from ray_tasks.ingest.stage import decode  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ROOTS = [Path(sys.base_prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}",
         Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages",
         Path("/usr/include"), Path("/usr/share/vim"), Path("/usr/share/perl"), Path("/usr/share/perl5"),
         Path("/usr/lib/x86_64-linux-gnu/perl"), Path("/usr/share/doc"), Path("/usr/share/X11"), Path("/usr/lib/python3")]
MAX_BYTES = 1 << 20


def collect(per_root: int, seed: int) -> list[tuple[str, bytes]]:
    """(path without the leading '/', raw bytes) for up to ``per_root`` text files of each root."""
    out: list[tuple[str, bytes]] = []
    seen: set[Path] = set()
    for root in ROOTS:
        if not root.is_dir():
            continue
        paths = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
        random.Random(seed).shuffle(paths)
        taken = 0
        for p in paths:
            if taken >= per_root:
                break
            if p in seen:
                continue
            try:
                if p.stat().st_size > MAX_BYTES:
                    continue
                data = p.read_bytes()
            except OSError:
                continue
            if enry.is_binary(data):
                continue
            seen.add(p)
            out.append((p.as_posix().lstrip("/"), data))
            taken += 1
    return out


def previous_module(rev: str, name: str, path: str):
    """``path`` as committed at ``rev``, imported as a module of its own (the previous version)."""
    source = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    tmp = Path(tempfile.mkdtemp()) / f"{name}.py"
    tmp.write_text(source)
    spec = importlib.util.spec_from_file_location(name, tmp)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def as_table(files: list[tuple[str, str]]) -> pa.Table:
    """A dedup-like files table (one repository, permissive) from decoded files."""
    data = [c.encode("utf-8", "surrogatepass") for _, c in files]
    return pa.table({"repo_name": ["bench/corpus"] * len(files), "path": [p for p, _ in files],
                     "content": [c for _, c in files], "length_bytes": [len(d) for d in data],
                     "sha256": [hashlib.sha256(d).hexdigest() for d in data],
                     "license_type": ["permissive"] * len(files)})


def agreement(corpus: list[tuple[str, bytes]], old_detect) -> list[tuple[str, str]]:
    """Print StarFlow's (and the previous detector's) agreement with go-enry; return the decoded files."""
    decoded, undecodable = [], 0
    for path, data in corpus:
        d = decode(RawFile("bench/corpus", path, data, len(data)))
        if d.text is None:
            undecodable += 1
        else:
            decoded.append((path, d.text, enry.get_language(path, data) or None))
    table = filters.annotate(as_table([(p, c) for p, c, _ in decoded]))
    ours = table.column("language").to_pylist()
    ref = [r for _, _, r in decoded]
    same = sum(a == b for a, b in zip(ours, ref))
    old_same = sum(old_detect(p, c) == r for p, c, r in decoded)
    print(f"corpus: {len(corpus)} text files from {sum(r.is_dir() for r in ROOTS)} roots; {undecodable} not decodable"
          f" (ingest skips them); {len(decoded)} compared, {len(set(ref))} go-enry languages")
    print(f"StarFlow == go-enry: {same}/{len(decoded)} = {same / max(len(decoded), 1):.3%}")
    print(f"previous detector (pygments) == go-enry: {old_same}/{len(decoded)} = {old_same / max(len(decoded), 1):.3%}")
    misses = Counter((r, o) for o, r in zip(ours, ref) if o != r)
    for (r, o), n in misses.most_common(20):
        print(f"  go-enry {r!s:24s} StarFlow {o!s:24s} {n}")
    unlisted = sorted({r for r in ref if r} - set(language.LINGUIST_NAMES))
    print(f"labels missing from LINGUIST_NAMES: {unlisted or 'none'}")
    return [(p, c) for p, c, _ in decoded]


def timed_curate(files: pa.Table, cfg: CurateParams, old=None) -> float:
    """Seconds of one in-process ``curate()``, with the previous detector swapped in when ``old`` is given."""
    saved = {k: getattr(filters, k) for k in ("detect_language", "is_vendor", "is_generated", "content_bytes")}
    if old is not None:
        old_lang, old_prov = old
        filters.detect_language, filters.content_bytes = old_lang.detect_language, (lambda c: c)
        filters.is_vendor, filters.is_generated = old_prov.is_vendor, old_prov.is_generated
    try:
        t = time.perf_counter()
        curate(files, cfg, use_ray=False)
        return time.perf_counter() - t
    finally:
        for k, v in saved.items():
            setattr(filters, k, v)


def language_seconds(files: pa.Table) -> float:
    """Seconds of the language step alone: encode, ``get_language``, ``is_vendor``, ``is_generated``."""
    paths, contents = files.column("path").to_pylist(), files.column("content").to_pylist()
    t = time.perf_counter()
    for p, c in zip(paths, contents):
        data = language.content_bytes(c)
        language.detect_language(p, data), language.is_vendor(p), language.is_generated(p, data)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-root", type=int, default=6000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--big", type=int, default=100_000, help="files in the large corpus (0: skip)")
    ap.add_argument("--old-rev", default="HEAD", help="git revision of the previous detector")
    ap.add_argument("--dedup", type=Path, default=ROOT / "data/dedup/files")
    args = ap.parse_args()
    old = (previous_module(args.old_rev, "_old_language", "ray_tasks/language.py"),
           previous_module(args.old_rev, "_old_provenance", "ray_tasks/curate/provenance.py"))
    agreement(collect(args.per_root, seed=0), old[0].detect_language)

    from flows.config import load_params
    cfg = load_params(ROOT / "params.yaml").curate
    default = pq.read_table(args.dedup)
    timed_curate(default, cfg), timed_curate(default, cfg, old)  # warm-up: tables, caches, imports
    # Alternated, best of each: the machine is shared, so a slow spell must hit both sides alike.
    rounds = [(timed_curate(default, cfg), timed_curate(default, cfg, old)) for _ in range(args.rounds)]
    new_t, old_t = min(r[0] for r in rounds), min(r[1] for r in rounds)
    lang_t = language_seconds(default)
    print(f"default corpus ({default.num_rows} files): curate new {new_t:.2f}s, previous {old_t:.2f}s,"
          f" ratio {new_t / old_t:.3f}; language step {lang_t:.2f}s = {lang_t / new_t:.1%} of curate")
    if args.big:
        texts = ((p, decode(RawFile("bench/corpus", p, d, len(d))).text) for p, d in collect(args.big, seed=1))
        big = as_table([(p, t) for p, t in texts if t is not None][: args.big])
        t = timed_curate(big, cfg)
        lang_t = language_seconds(big)
        print(f"big corpus ({big.num_rows} files, {sum(big.column('length_bytes').to_pylist()) / 1e6:.0f} MB):"
              f" curate {t:.1f}s; language step {lang_t:.1f}s = {lang_t / t:.1%} of curate")


if __name__ == "__main__":
    main()
