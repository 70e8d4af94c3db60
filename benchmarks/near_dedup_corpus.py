"""Synthetic-but-realistic code corpora with planted duplicates, for near-dedup tests and benchmarks.

Real source files (by default the ``.py`` files of the installed packages) are the raw
material. Every generated file is a real file whose lines were mutated:

* ``unique`` files get a random comment token appended to every line, which breaks most
  5-gram shingles, so two unique variants of the same real file stay far apart
  (Jaccard ~0.2-0.4) while keeping the statistics of real code;
* ``near`` copies edit a small fraction of the lines of an earlier file (change, delete or
  duplicate a line), which lands them at Jaccard ~0.6-0.98 to it;
* ``exact`` copies are verbatim, and a few repositories are cloned whole under another name.

Everything is drawn from one seeded ``random.Random``, so a (sources, n, seed) triple gives the
same corpus every time. ``exact_jaccard`` is the ground truth that the MinHash decisions of
``ray_tasks/dedup`` are scored against (tests/ray_tasks/dedup, benchmarks/dedup.py).

    table = make_corpus(read_sources(), n_files=100_000, seed=0)
    exact_jaccard(a, b, DedupParams())
"""

from __future__ import annotations

import random
import re
import sysconfig
from pathlib import Path

import pyarrow as pa

from ray_tasks.dedup.params import DedupParams

LICENSES = ("permissive", "permissive", "no_license", "non_permissive")


def read_sources(root: str | Path | None = None, limit: int | None = None, min_bytes: int = 1024,
                 max_bytes: int = 32 * 1024) -> list[str]:
    """Distinct UTF-8 ``.py`` files under ``root`` (default: this environment's site-packages)."""
    root = Path(root or sysconfig.get_paths()["purelib"])
    seen, out = set(), []
    for p in sorted(root.rglob("*.py")):
        try:
            size = p.stat().st_size
            if not min_bytes <= size <= max_bytes:
                continue
            text = p.read_text("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if text in seen:
            continue
        seen.add(text)
        out.append(text)
        if limit and len(out) >= limit:
            break
    return out


def mutate_lines(text: str, rate: float, rng: random.Random) -> str:
    """Edit about ``rate`` of the lines: change a word, delete the line, or duplicate it."""
    lines = text.split("\n")
    out: list[str] = []
    for line in lines:
        if rng.random() >= rate:
            out.append(line)
            continue
        op = rng.random()
        if op < 0.5:
            out.append(f"{line} # {_word(rng)}")
        elif op < 0.75:
            continue
        else:
            out.extend([line, line])
    return "\n".join(out)


def make_unique(text: str, rng: random.Random) -> str:
    """A variant that shares few 5-grams with any other variant of the same file."""
    return "\n".join(f"{line} # {_word(rng)}" if line.strip() else line for line in text.split("\n"))


def _word(rng: random.Random) -> str:
    return f"w{rng.getrandbits(40):x}"


def make_corpus(sources: list[str], n_files: int, seed: int = 0, files_per_repo: int = 20,
                near_fraction: float = 0.2, exact_fraction: float = 0.05, repo_clone_fraction: float = 0.02,
                near_rate: tuple[float, float] = (0.01, 0.1)) -> pa.Table:
    """A files table (repo_name, path, content, license_type, star_events_count, fork_events_count)."""
    rng = random.Random(seed)
    contents: list[str] = []
    kinds: list[str] = []
    for i in range(n_files):
        r = rng.random()
        if contents and r < exact_fraction:
            contents.append(contents[rng.randrange(len(contents))])
            kinds.append("exact")
        elif contents and r < exact_fraction + near_fraction:
            contents.append(mutate_lines(contents[rng.randrange(len(contents))], rng.uniform(*near_rate), rng))
            kinds.append("near")
        else:
            contents.append(make_unique(sources[i % len(sources)], rng))
            kinds.append("unique")
    rows_repo, rows_path = [], []
    n_repos = max(1, (n_files + files_per_repo - 1) // files_per_repo)
    for i in range(n_files):
        rows_repo.append(f"org{(i // files_per_repo) % 97}/repo{i // files_per_repo:06d}")
        rows_path.append(f"src/mod{i % files_per_repo:03d}.py")
    repo_meta = {f"org{k % 97}/repo{k:06d}": (rng.choice(LICENSES), rng.randrange(0, 5000), rng.randrange(0, 500))
                 for k in range(n_repos)}
    # Clone a few whole repositories under new names (repository-level exact duplicates).
    n_clones = int(n_repos * repo_clone_fraction)
    for c in range(n_clones):
        src = rng.randrange(n_repos)
        name = f"forks/clone{c:05d}"
        repo_meta[name] = (rng.choice(LICENSES), rng.randrange(0, 5000), rng.randrange(0, 500))
        for i in range(src * files_per_repo, min((src + 1) * files_per_repo, n_files)):
            rows_repo.append(name)
            rows_path.append(rows_path[i])
            contents.append(contents[i])
            kinds.append("repo_clone")
    lic, stars, forks = zip(*(repo_meta[r] for r in rows_repo))
    return pa.table({
        "repo_name": pa.array(rows_repo, pa.string()),
        "path": pa.array(rows_path, pa.string()),
        "content": pa.array(contents, pa.large_string()),
        "license_type": pa.array(lic, pa.string()),
        "star_events_count": pa.array(stars, pa.int64()),
        "fork_events_count": pa.array(forks, pa.int64()),
        "planted": pa.array(kinds, pa.string()),
    })


def jaccard_pairs(sources: list[str], n_pairs: int, seed: int = 0, rates: tuple[float, float] = (0.0, 0.6)) -> list[tuple[str, str]]:
    """(real file, mutated copy) pairs with edit rates spread over ``rates``: Jaccard from ~0.2 to 1."""
    rng = random.Random(seed)
    picks = rng.sample(range(len(sources)), min(n_pairs, len(sources)))
    return [(sources[i], mutate_lines(sources[i], rng.uniform(*rates), rng)) for i in picks]


# --------------------------------------------------------------------------- ground truth
def seed_shingles(text: str, ngram_size: int, min_tokens: int) -> set[str]:
    """The seed's shingle set in plain Python: ``re.split(r'\\W', text.lower())``, word n-grams
    joined by spaces, none for a document of fewer than ``min_tokens`` tokens."""
    tokens = re.split(r"\W", text.lower())
    if len(tokens) < min_tokens:
        return set()
    return {" ".join(tokens[i : i + ngram_size]) for i in range(max(len(tokens) - ngram_size + 1, 1))}


def exact_jaccard(a: str, b: str, params: DedupParams) -> float:
    """Exact Jaccard similarity of the two texts' seed shingles (1.0 when neither has any)."""
    sa, sb = (seed_shingles(t, params.ngram_size, params.min_tokens) for t in (a, b))
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)
