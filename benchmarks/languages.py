"""Language detection agreement on real files with unambiguous extensions.

Real files: everything installed in this environment's site-packages. A file
counts when its extension is claimed by exactly one lexer in pygments' registry;
the registry's own answer (``get_lexer_for_filename``) is the reference and
StarFlow's ``detect_language(path, content)`` (name, extension, then content) is
compared with it. Also prints how many languages StarFlow can detect.

    python benchmarks/languages.py [--max-files 50000]
"""

from __future__ import annotations

import argparse
import random
import sys
import sysconfig
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ray_tasks.language import detect_language, language_count, registry_language, unambiguous_extensions  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-files", type=int, default=50_000)
    args = ap.parse_args()
    unambiguous = unambiguous_extensions()
    root = Path(sysconfig.get_paths()["purelib"])
    files = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in unambiguous]
    random.Random(0).shuffle(files)
    files = files[: args.max_files]
    t0 = time.time()
    agree, by_lang, misses = 0, Counter(), Counter()
    for path in files:
        rel = path.relative_to(root).as_posix()
        try:
            head = path.read_bytes()[:65536].decode("utf-8", "replace")
        except OSError:
            continue
        ours, ref = detect_language(rel, head), registry_language(rel)
        by_lang[ref] += 1
        if ours == ref:
            agree += 1
        else:
            misses[(path.suffix.lower(), ref, ours)] += 1
    elapsed = time.time() - t0
    print(f"supported languages: {language_count()}")
    print(f"files with an unambiguous extension: {len(files)} ({len(by_lang)} languages), {len(files) / elapsed:,.0f} files/s")
    print(f"agreement with pygments' own mapping: {agree}/{len(files)} = {agree / max(len(files), 1):.2%}")
    print("largest languages:", ", ".join(f"{k} {v}" for k, v in by_lang.most_common(12)))
    print("disagreements (extension, registry, StarFlow): count")
    for (ext, ref, ours), n in misses.most_common(15):
        print(f"  {ext:10s} {ref!s:20s} {ours!s:20s} {n}")


if __name__ == "__main__":
    main()
