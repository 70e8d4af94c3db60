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
from pathlib import Path, PurePosixPath

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ray_tasks.language import detect_language, linguist_name, supported_languages  # noqa: E402


def registry_language(path: str) -> str | None:
    """The registry's own answer by file name alone (pygments), the reference here."""
    from pygments.lexers import get_lexer_for_filename
    from pygments.util import ClassNotFound

    try:
        return linguist_name(get_lexer_for_filename(PurePosixPath(path).name).name)
    except ClassNotFound:
        return None


def unambiguous_extensions() -> dict[str, str]:
    """Extensions exactly one lexer claims, with its language."""
    from pygments.lexers import get_all_lexers

    claims: dict[str, set[str]] = {}
    for name, _aliases, patterns, _mimes in get_all_lexers():
        for pat in patterns:
            if pat.startswith("*.") and not any(c in pat[2:] for c in "*?["):
                claims.setdefault(pat[1:].lower(), set()).add(linguist_name(name))
    return {ext: next(iter(v)) for ext, v in claims.items() if len(v) == 1}


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
    print(f"supported languages: {len(supported_languages())}")
    print(f"files with an unambiguous extension: {len(files)} ({len(by_lang)} languages), {len(files) / elapsed:,.0f} files/s")
    print(f"agreement with pygments' own mapping: {agree}/{len(files)} = {agree / max(len(files), 1):.2%}")
    print("largest languages:", ", ".join(f"{k} {v}" for k, v in by_lang.most_common(12)))
    print("disagreements (extension, registry, StarFlow): count")
    for (ext, ref, ours), n in misses.most_common(15):
        print(f"  {ext:10s} {ref!s:20s} {ours!s:20s} {n}")


if __name__ == "__main__":
    main()
