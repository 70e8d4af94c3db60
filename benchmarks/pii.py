"""PII step: quality on the labelled set, and throughput against detect-secrets alone.

    .venv/bin/python benchmarks/pii.py                 # both parts
    .venv/bin/python benchmarks/pii.py --quality-only  # the labelled table only (seconds)

Quality: tests/assets/pii_labelled.yaml (hand-labelled snippets in many languages and file
types, with secrets and decoys). A secret is caught when a finding of its type covers its span;
a decoy survives when it is still in the redacted text. Findings that cover no labelled secret
are listed as unlabelled findings (false positives, unless the label set missed something).

Throughput: the default corpus (the source files of the distributions in params.yaml's
``ingest.sources``, read as ingest does: < 10 MiB, no NUL byte, UTF-8), timed in one run, one
process each, for (a) StarFlow's PII step (emails + IPs + keys + passwords, redaction included)
and (b) detect-secrets' own ``scan_file`` with its default settings (all plugins and filters:
keys, passwords and public IPv4 only). Files are written to a temp folder first so both read the
same bytes from disk; the two tools alternate over chunks of files so that both see the same
machine load (other jobs share it).

``--previous REV`` adds (c) the PII step as committed at a git revision (``git show
REV:ray_tasks/curate/pii.py``, loaded as a temporary module) to the same interleaved run, and prints
the current/previous time ratio and both versions' counts per type (issue 18: within 1.5x).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from collections import Counter
from importlib import metadata
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ray_tasks.curate.params import PiiParams  # noqa: E402
from ray_tasks.curate.pii import PII_TYPES, detect, redact  # noqa: E402

LABELLED = ROOT / "tests" / "assets" / "pii_labelled.yaml"


def load_labelled(path: Path = LABELLED) -> list[dict]:
    snippets = yaml.safe_load(path.read_text())
    for s in snippets:
        for kind, value in s.get("secrets") or []:
            if kind not in PII_TYPES or value not in s["text"]:
                raise ValueError(f"{path}: snippet {s['id']}: bad label {kind} {value!r}")
    return snippets


def score(snippets: list[dict], params: PiiParams | None = None) -> dict:
    """Per-type recall, decoy survival and unlabelled findings over the labelled set (default params unless given)."""
    params = params or PiiParams()
    total, caught = Counter(), Counter()
    decoys = survived = 0
    missed, broken, unlabelled = [], [], []
    for s in snippets:
        text = s["text"]
        findings = detect(text, s["path"], params)
        redacted, _ = redact(text, s["path"], params)
        spans = []
        for kind, value in s.get("secrets") or []:
            start = text.index(value)
            spans.append((start, start + len(value)))
            total[kind] += 1
            if any(f.type == kind and f.start <= start and f.end >= start + len(value) for f in findings):
                caught[kind] += 1
            else:
                missed.append((s["id"], kind, value))
        for d in s.get("decoys") or []:
            if d not in text:
                raise ValueError(f"snippet {s['id']}: decoy {d!r} is not in the text")
            decoys += 1
            if d in redacted:
                survived += 1
            else:
                broken.append((s["id"], d))
        for f in findings:
            if not any(f.start < b and a < f.end for a, b in spans):
                unlabelled.append((s["id"], f.type, f.value))
    return {
        "snippets": len(snippets),
        "recall": {k: (caught[k], total[k]) for k in PII_TYPES if total[k]},
        "decoys": (survived, decoys),
        "missed": missed,
        "decoys_broken": broken,
        "unlabelled_findings": unlabelled,
    }


def print_quality(result: dict, path: Path = LABELLED) -> None:
    print(f"labelled set: {result['snippets']} snippets ({path})")
    print(f"| {'type':<10} | secrets | caught | recall |")
    print(f"|{'-' * 12}|---------|--------|--------|")
    for kind, (c, n) in result["recall"].items():
        print(f"| {kind:<10} | {n:7d} | {c:6d} | {c / n:6.3f} |")
    s, d = result["decoys"]
    print(f"decoys untouched: {s}/{d} = {s / d:.3f}")
    print(f"unlabelled findings (false positives): {len(result['unlabelled_findings'])}")
    for row in result["missed"]:
        print("  missed:", row)
    for row in result["decoys_broken"]:
        print("  decoy changed:", row)
    for row in result["unlabelled_findings"]:
        print("  unlabelled:", row)


# --------------------------------------------------------------------------- throughput
def default_corpus(max_bytes: int = 10 * 2**20) -> list[tuple[str, bytes]]:
    """(path, bytes) of the default corpus: params.yaml's python_env distributions, read like ingest."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    wanted = set()
    for src in params["ingest"]["sources"]:
        if src.get("kind") == "python_env":
            wanted |= {d.lower().replace("_", "-") for d in src.get("distributions") or []}
    out, seen = [], set()
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name not in wanted or name in seen:
            continue
        seen.add(name)
        for f in dist.files or []:
            if any(p.endswith(".dist-info") or p in {"__pycache__", ".."} for p in f.parts):
                continue
            p = Path(dist.locate_file(f))
            try:
                if p.stat().st_size >= max_bytes:
                    continue
                data = p.read_bytes()
                data.decode("utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if b"\x00" not in data:
                out.append((f"{name}/{f}", data))
    return out


def materialise(files: list[tuple[str, bytes]], root: Path) -> list[Path]:
    paths = []
    for i, (rel, data) in enumerate(files):
        p = root / f"{i:05d}" / Path(rel).name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        paths.append(p)
    return paths


def previous_redact(rev: str, tmp: Path):
    """``redact`` of ray_tasks/curate/pii.py at git revision ``rev`` (a module loaded from a temp file)."""
    source = subprocess.run(["git", "show", f"{rev}:ray_tasks/curate/pii.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    path = tmp / "pii_previous.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("pii_previous", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module.redact


def run_ours(paths: list[Path], redact_fn=None) -> tuple[float, Counter, list]:
    redact_fn = redact_fn or redact
    params = PiiParams()
    counts: Counter = Counter()
    hits = []
    t0 = time.perf_counter()
    for p in paths:
        text = p.read_text(encoding="utf-8")
        _, findings = redact_fn(text, str(p), params)
        counts.update(f.type for f in findings)
        hits += [(p, text.count("\n", 0, f.start) + 1, f.type, f.value) for f in findings]
    return time.perf_counter() - t0, counts, hits


def run_detect_secrets(paths: list[Path]) -> tuple[float, Counter, list]:
    from detect_secrets.core.scan import scan_file
    from detect_secrets.settings import default_settings

    counts: Counter = Counter()
    hits = []
    with default_settings():
        t0 = time.perf_counter()
        for p in paths:
            for s in scan_file(str(p)):
                counts[s.type] += 1
                hits.append((p, s.line_number, s.type, s.secret_value))
        return time.perf_counter() - t0, counts, hits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quality-only", action="store_true")
    ap.add_argument("--labelled", type=Path, default=LABELLED, help="labelled set to score (default: %(default)s)")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N corpus files")
    ap.add_argument("--chunk", type=int, default=100, help="files per interleaved timing chunk")
    ap.add_argument("--previous", metavar="REV", default=None,
                    help="also time ray_tasks/curate/pii.py as of this git revision and print the ratio")
    args = ap.parse_args()
    print_quality(score(load_labelled(args.labelled)), args.labelled)
    if args.quality_only:
        return
    files = default_corpus()[: args.limit]
    mib = sum(len(d) for _, d in files) / 2**20
    print(f"\ndefault corpus: {len(files)} files, {mib:.1f} MiB")
    with tempfile.TemporaryDirectory() as tmp:
        paths = materialise(files, Path(tmp))
        previous = previous_redact(args.previous, Path(tmp)) if args.previous else None
        # Interleaved chunks: all tools see the same (shared, noisy) machine load.
        t_peer = t_ours = t_prev = 0.0
        c_peer, c_ours, c_prev, h_peer, h_ours, ratios = Counter(), Counter(), Counter(), [], [], []
        for i in range(0, len(paths), args.chunk):
            chunk = paths[i : i + args.chunk]
            tp, cp, hp = run_detect_secrets(chunk)
            to, co, ho = run_ours(chunk)
            if previous:
                tv, cv, _ = run_ours(chunk, previous)
                t_prev += tv
                c_prev.update(cv)
            t_peer, t_ours = t_peer + tp, t_ours + to
            c_peer.update(cp), c_ours.update(co), h_peer.extend(hp), h_ours.extend(ho)
            ratios.append(tp / to)
        names = {p: rel for p, (rel, _) in zip(paths, files)}
    n = len(paths)
    print(f"| {'tool':<44} | files/s | MiB/s | findings |")
    print(f"|{'-' * 46}|---------|-------|----------|")
    print(f"| {'detect-secrets scan_file (default settings)':<44} | {n / t_peer:7.1f} | {mib / t_peer:5.2f} | {sum(c_peer.values()):8d} |")
    print(f"| {'StarFlow PII redact (email, IP, key, password)':<44} | {n / t_ours:7.1f} | {mib / t_ours:5.2f} | {sum(c_ours.values()):8d} |")
    ratios.sort()
    print(f"speed ratio StarFlow / detect-secrets: {t_peer / t_ours:.2f}x overall; per chunk of {args.chunk} files: "
          f"median {ratios[len(ratios) // 2]:.1f}x, range {ratios[0]:.1f}x-{ratios[-1]:.1f}x")
    print("StarFlow findings by type:", dict(c_ours))
    if previous:
        print(f"previous version ({args.previous}): {n / t_prev:.1f} files/s, {mib / t_prev:.2f} MiB/s; "
              f"time current / previous: {t_ours / t_prev:.2f}x")
        print("findings by type, previous -> current: " + ", ".join(
            f"{t} {c_prev.get(t, 0)} -> {c_ours.get(t, 0)}" for t in PII_TYPES))
    print("detect-secrets findings by type:", dict(c_peer.most_common()))
    for label, hits in (("detect-secrets", h_peer), ("StarFlow", h_ours)):
        for p, line, kind, value in hits:
            print(f"  {label}: {names[p]}:{line}: {kind}: {str(value)[:40]!r}")


if __name__ == "__main__":
    main()
