"""Decontamination matcher: Aho-Corasick (ray_tasks/curate/decontaminate.py) against the seed's loop.

    .venv/bin/python benchmarks/decontaminate.py

The seed (bcd/decontamination) checks ``substring in content`` for every benchmark string and
every file. Both run here on the default corpus (benchmarks/pii.py's reader) with the same
normalisation (lower case, whitespace removed) and the same HumanEval strings; they must agree
file for file. Prints files/s and the ratio.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from pii import default_corpus  # noqa: E402

from ray_tasks.curate.decontaminate import build_matcher, normalise  # noqa: E402
from ray_tasks.curate.params import DecontaminationParams  # noqa: E402


def main() -> None:
    texts = [data.decode("utf-8") for _, data in default_corpus()]
    matcher = build_matcher(DecontaminationParams())  # the default: HumanEval, every string
    items = matcher.items
    mib = sum(len(t.encode()) for t in texts) / 2**20
    print(f"default corpus: {len(texts)} files, {mib:.1f} MiB; {len(items)} HumanEval strings")

    keys = [normalise(i.text) for i in items]
    t0 = time.perf_counter()
    naive = []
    for t in texts:
        norm = normalise(t)
        naive.append(any(k in norm for k in keys))
    t_naive = time.perf_counter() - t0

    matcher.find("")  # build the automaton outside the timing, as each worker does once
    t0 = time.perf_counter()
    ours = [matcher.find(t) is not None for t in texts]
    t_ours = time.perf_counter() - t0

    assert ours == naive, "the automaton and the substring loop disagree"
    n = len(texts)
    print(f"| {'matcher':<34} | files/s | MiB/s | contaminated |")
    print(f"|{'-' * 36}|---------|-------|--------------|")
    print(f"| {'seed loop (substring in content)':<34} | {n / t_naive:7.1f} | {mib / t_naive:5.2f} | {sum(naive):12d} |")
    print(f"| {'Aho-Corasick (pyahocorasick)':<34} | {n / t_ours:7.1f} | {mib / t_ours:5.2f} | {sum(ours):12d} |")
    print(f"speed ratio Aho-Corasick / loop: {t_naive / t_ours:.1f}x")


if __name__ == "__main__":
    main()
