"""License detection accuracy: ScanCode on real license files vs the license the package metadata states.

Ground truth: every installed distribution whose core metadata states a license
(``License-Expression``, a ``License ::`` trove classifier, or a short ``License``
field) and whose dist-info carries a top-level license file. StarFlow scans
those files exactly as the ingest stage does (ray_tasks.ingest.sources.dist_license_files,
ScanCode toolkit underneath) and we compare license *families* (metadata names
such as "BSD License" or "GPLv2" carry no exact variant), and, for
distributions with an SPDX ``License-Expression``, exact SPDX ids as well.

    python benchmarks/licenses.py            # prints agreement and every miss
"""

from __future__ import annotations

import re
import sys
import time
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ray_tasks.ingest.licenses import licenses_from_metadata  # noqa: E402
from ray_tasks.ingest.sources import dist_license_files, license_dir_in_dist  # noqa: E402

NEUTRAL = re.compile(r"LicenseRef-scancode-(unknown-license-reference|generic-cla|warranty-disclaimer|free-unknown)")


def family(spdx: str) -> str:
    s = spdx.lower().removesuffix("+")
    s = re.sub(r"-(only|or-later)$", "", s)
    if s.startswith("bsd"):
        return "bsd"
    if s in ("psf-2.0", "python-2.0", "python-2.0.1", "licenseref-scancode-python-cwi"):
        return "python"
    m = re.match(r"^(a?gpl|lgpl|mpl|epl|apache|cc0|zlib|isc|mit|unlicense|bsl|hpnd|cnri)", s)
    return m.group(1) if m else s


def main() -> None:
    rows = []
    t0 = time.time()
    seen = set()
    for dist in sorted(metadata.distributions(), key=lambda d: (d.metadata["Name"] or "").lower()):
        name = (dist.metadata["Name"] or "").lower()
        if not name or name in seen:
            continue
        seen.add(name)
        stated = licenses_from_metadata(dist.metadata)
        if not stated:
            continue
        found = {p: ids for p, ids in dist_license_files(dist).items() if license_dir_in_dist(p) == ""}
        has_files = any(license_dir_in_dist(f.as_posix()) == "" and "license" in f.as_posix().lower()
                        for f in (dist.files or []) if ".dist-info" in f.as_posix())
        if not found and not has_files:
            continue  # no license file to scan: nothing to measure
        detected = {i for ids in found.values() for i in ids if not NEUTRAL.match(i)}
        exact = bool(dist.metadata.get("License-Expression"))
        rows.append((name, sorted(stated), sorted(detected), exact))
    elapsed = time.time() - t0

    agree = [r for r in rows if {family(s) for s in r[1]} <= {family(d) for d in r[2]}]
    exact_rows = [r for r in rows if r[3]]
    exact_agree = [r for r in exact_rows if set(r[1]) <= {d.removesuffix("+") for d in r[2]}]
    print(f"distributions with a stated license and a license file: {len(rows)} (scanned in {elapsed:.1f} s)")
    print(f"family agreement (metadata license family found by ScanCode): {len(agree)}/{len(rows)} = {len(agree) / len(rows):.1%}")
    if exact_rows:
        print(f"exact SPDX agreement where metadata is an SPDX expression: {len(exact_agree)}/{len(exact_rows)} "
              f"= {len(exact_agree) / len(exact_rows):.1%}")
    print("\nmisses (distribution: metadata -> ScanCode):")
    for name, stated, detected, _ in rows:
        if (name, stated, detected, _) not in agree:
            print(f"  {name}: {stated} -> {detected}")


if __name__ == "__main__":
    main()
