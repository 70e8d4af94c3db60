"""License fast pass vs ScanCode alone on real license files: agreement and speed-up.

The files: license-like files (ingest's own ``license_candidates``) under this environment's
site-packages (dist-info licenses and vendored LICENSE files), ``/usr/share/common-licenses``
and ``/usr/share/doc/*/copyright``, one per distinct text, cut as ingest cuts them. Each is
detected twice: ScanCode alone (``license_scan.scancode_ids``) and the stage's way
(``license_scan.scan_text``: the known-text pass, ScanCode for the rest). Prints how many
the fast pass answered, agreement by file and by distribution (site-packages), and the time
of each way: ScanCode's index load + every scan, against the known-text table's load + the
pass + ScanCode (load included) on what the pass left.

    python benchmarks/license_fastpass.py [--limit N]
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import site
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ray_tasks.ingest import license_known, license_scan  # noqa: E402
from ray_tasks.ingest.licenses import MAX_LICENSE_CHARS, README_HEAD_CHARS, license_candidates  # noqa: E402


LICENSE_NAMES = ("license", "licence", "copying", "copyright", "notice")
"""Files named as licenses (not READMEs: ingest scans those too, but they are seldom a license
text, so they would only measure ScanCode against itself)."""
SCANCODE_PACKAGES = {"licensedcode", "scancode", "scancode_toolkit_mini", "spdx_tools", "license_expression"}


def license_files() -> list[tuple[str, str, str]]:
    """(group, path, text) of each distinct license text; group is the distribution for
    site-packages files, else the system folder."""
    found: list[tuple[str, Path]] = []
    for root in site.getsitepackages():
        root_path = Path(root)
        paths = [p.relative_to(root_path).as_posix() for p in root_path.rglob("*")
                 if p.is_file() and p.name.lower().startswith(LICENSE_NAMES)]
        for rel in license_candidates(paths):
            top = rel.split("/", 1)[0].split("-", 1)[0].lower()
            if top not in SCANCODE_PACKAGES:  # ScanCode's own data and test files would flatter it
                found.append((top, root_path / rel))
    found += [("common-licenses", Path(p)) for p in sorted(glob.glob("/usr/share/common-licenses/*"))]
    found += [("debian-copyright", Path(p)) for p in sorted(glob.glob("/usr/share/doc/*/copyright"))]
    seen, out = set(), []
    for group, path in found:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        text = text[:README_HEAD_CHARS] if path.name.lower().startswith("readme") else text[:MAX_LICENSE_CHARS]
        digest = hashlib.sha1(text.encode("utf-8", "replace")).hexdigest()
        if text.strip() and digest not in seen:
            seen.add(digest)
            out.append((group, str(path), text))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=None, help="at most this many files")
    args = ap.parse_args()
    files = license_files()[: args.limit]
    print(f"{len(files)} distinct license texts")

    t = time.perf_counter()
    license_known.known_texts()
    table_s = time.perf_counter() - t
    t = time.perf_counter()
    fast = [license_known.known_license(text) for _, _, text in files]
    pass_s = time.perf_counter() - t

    t = time.perf_counter()
    license_scan._detector()
    load_s = time.perf_counter() - t
    scancode, scan_s = [], []
    for _, _, text in files:
        t = time.perf_counter()
        scancode.append(license_scan.scancode_ids(text))
        scan_s.append(time.perf_counter() - t)

    staged = [f if f is not None else s for f, s in zip(fast, scancode)]
    answered = [i for i, f in enumerate(fast) if f is not None]
    agree = [i for i in range(len(files)) if sorted(staged[i]) == sorted(scancode[i])]
    by_group: dict[str, list[bool]] = defaultdict(list)
    for i, (group, _, _) in enumerate(files):
        by_group[group].append(i in set(agree))
    groups_agree = sum(all(v) for v in by_group.values())
    alone_s = load_s + sum(scan_s)
    left = [scan_s[i] for i, f in enumerate(fast) if f is None]
    staged_s = table_s + pass_s + (load_s + sum(left) if left else 0.0)

    print(f"fast pass answered {len(answered)}/{len(files)} ({100 * len(answered) / max(len(files), 1):.1f}%)")
    print(f"agreement with ScanCode alone: {len(agree)}/{len(files)} files "
          f"({100 * len(agree) / max(len(files), 1):.2f}%), {groups_agree}/{len(by_group)} distributions/folders "
          f"({100 * groups_agree / max(len(by_group), 1):.2f}%)")
    answered_agree = sum(1 for i in answered if i in set(agree))
    print(f"  of the fast pass's answers: {answered_agree}/{len(answered)} agree")
    print(f"ScanCode alone: {alone_s:.1f} s (index load {load_s:.1f} s + scans {sum(scan_s):.1f} s)")
    print(f"fast pass + ScanCode for the rest: {staged_s:.1f} s (table {table_s:.2f} s, pass {pass_s:.3f} s, "
          f"ScanCode on {len(left)} files {sum(left):.1f} s + load)")
    print(f"speed-up: {alone_s / max(staged_s, 1e-9):.2f}x; on the files the pass answered: "
          f"{sum(scan_s[i] for i in answered) / max(pass_s, 1e-9):.0f}x")
    for i in range(len(files)):
        if i not in set(agree):
            print(f"  DISAGREE {files[i][1]}: fast {fast[i]} scancode {scancode[i]}")


if __name__ == "__main__":
    main()
