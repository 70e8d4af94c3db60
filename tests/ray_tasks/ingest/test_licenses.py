import re
import textwrap
from email.message import Message
from pathlib import Path

from tests.conftest import GPL, MIT
from ray_tasks.ingest.licenses import (
    NO_LICENSE, NON_PERMISSIVE, PERMISSIVE, classify, is_license_file, licenses_from_metadata, licenses_from_text,
    permissive_licenses, scan_repository, spdx_from_expression,
)

APACHE_NOTICE = """Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0
"""


def _meta(**fields) -> Message:
    m = Message()
    for k, v in fields.items():
        for item in v if isinstance(v, list) else [v]:
            m[k.replace("_", "-")] = item
    return m


def test_classify_follows_the_papers_algorithm():
    assert classify(["MIT"]) == PERMISSIVE
    assert classify(["MIT", "Apache-2.0"]) == PERMISSIVE
    assert classify([]) == NO_LICENSE
    assert classify(["GPL-3.0-only"]) == NON_PERMISSIVE
    assert classify(["MIT", "MPL-2.0"]) == NON_PERMISSIVE  # any non-permissive taints the file
    # An unknown reference next to a permissive license is ignored; alone it is non-permissive.
    assert classify(["MIT", "LicenseRef-scancode-unknown-license-reference"]) == PERMISSIVE
    assert classify(["LicenseRef-scancode-unknown-license-reference"]) == NON_PERMISSIVE
    # CLAs and disclaimers alone mean no license.
    assert classify(["LicenseRef-scancode-generic-cla"]) == NO_LICENSE
    # A declared (GitHub) license decides first: permissive overrides detected copyleft.
    assert classify(["GPL-3.0-only"], declared=["MIT"]) == PERMISSIVE
    assert classify(["MIT"], declared=["GPL-2.0-only"]) == NON_PERMISSIVE
    assert classify([], declared=["NOASSERTION"]) == NON_PERMISSIVE
    assert len(permissive_licenses()) > 800  # ScanCode's Permissive + Public Domain categories


def test_scancode_on_real_license_texts():
    assert licenses_from_text(MIT) == {"MIT"}
    assert licenses_from_text(GPL) == {"GPL-3.0-only"}
    assert licenses_from_text(APACHE_NOTICE) == {"Apache-2.0"}
    assert licenses_from_text("def f():\n    return 1\n") == set()


def test_metadata_precedence():
    assert licenses_from_metadata(_meta(License_Expression="MIT OR Apache-2.0", License="GPL")) == {"MIT", "Apache-2.0"}
    assert licenses_from_metadata(_meta(Classifier=["License :: OSI Approved :: BSD License"])) == {"BSD-3-Clause"}
    assert licenses_from_metadata(_meta(License="Apache 2.0")) == {"Apache-2.0"}
    assert licenses_from_metadata(_meta(License="UNKNOWN")) == set()
    assert spdx_from_expression("(MIT AND BSD-3-Clause) OR GPL-2.0+ WITH Classpath-exception-2.0") == {
        "MIT", "BSD-3-Clause", "GPL-2.0", "Classpath-exception-2.0"}


def test_license_file_names():
    for name in ["LICENSE", "LICENSE.txt", "COPYING", "license-mit", "NOTICE", "README.md", "COPYING.LESSER"]:
        assert is_license_file(name), name
    assert not is_license_file("setup.py") and not is_license_file("licensing.py")


def test_scan_repository_propagates_by_directory():
    texts = {"LICENSE": MIT, "src/a.py": "x = 1", "third_party/gpl/COPYING": GPL, "third_party/gpl/b.c": "int b;",
             "docs/README.md": "# Docs\n\n" + APACHE_NOTICE}
    found = scan_repository(list(texts), texts.get)
    assert found.files == {"LICENSE": ["MIT"], "third_party/gpl/COPYING": ["GPL-3.0-only"], "docs/README.md": ["Apache-2.0"]}
    assert found.detected_for("src/a.py") == ["MIT"]
    assert found.detected_for("third_party/gpl/b.c") == ["GPL-3.0-only", "MIT"]
    assert found.type_for("src/a.py") == PERMISSIVE and found.type_for("third_party/gpl/b.c") == NON_PERMISSIVE
    assert found.repo_type == PERMISSIVE


def _scancode_text(name: str) -> str:
    """The body of one of ScanCode's own license texts (its data ships with scancode-toolkit)."""
    from ray_tasks.ingest.license_known import _read, _scancode_data

    return _read(_scancode_data() / "licenses" / name)[1]


def test_known_license_texts_are_answered_without_scancode_and_agree_with_it():
    from ray_tasks.ingest.license_known import known_license, normalise
    from ray_tasks.ingest.license_scan import scancode_ids

    mit = "MIT License\n\nCopyright (c) 2031 Jane Q. Example <jane@example.org>\n\n" + _scancode_text("mit.LICENSE")
    bsd = "Copyright (C) 1999-2030, The Example Authors\nAll rights reserved.\n\n" + _scancode_text("bsd-new.LICENSE")
    paragraphs = re.split(r"\n\s*\n", _scancode_text("apache-2.0.LICENSE"))
    rewrapped = "\n\n".join(textwrap.fill(p, width=60, initial_indent="  ") for p in paragraphs)  # rewrapped
    for text, expected in ((mit, ["MIT"]), (bsd, ["BSD-3-Clause"]), (rewrapped, ["Apache-2.0"])):
        assert known_license(text) == expected
        assert scancode_ids(text) == expected  # the answer ScanCode alone gives
    # Not a known text: a changed clause, a short notice, a README. These go to ScanCode.
    changed = mit.replace("free of charge", "for a fee of ten dollars")
    assert known_license(changed) is None
    assert known_license("Licensed under the MIT license.") is None
    assert known_license(APACHE_NOTICE) is None and licenses_from_text(APACHE_NOTICE) == {"Apache-2.0"}
    assert normalise("Copyright (c) 2020 X\nPermission is  granted,\nfree!") == "permission is granted free"


def _fresh_memory():
    """Forget this process's in-memory ScanCode results (the disk cache is what is under test)."""
    from ray_tasks.ingest import license_scan

    license_scan._scan_cached.cache_clear()


def test_scancode_results_are_kept_by_text_on_disk_and_a_hit_never_asks_for_the_index(tmp_path):
    from ray_tasks.ingest import license_scan

    text = APACHE_NOTICE + "\nSee NOTICE for this test's own attribution.\n"  # not a known text: ScanCode's
    _fresh_memory()
    plain = license_scan.scancode_ids(text)  # no folder: ScanCode itself
    assert plain == ["Apache-2.0"]
    _fresh_memory()
    scans, hits = license_scan.COUNTS["scans"], license_scan.COUNTS["cache_hits"]
    with license_scan.result_cache(tmp_path):
        assert license_scan.scancode_ids(text) == plain
    assert license_scan.COUNTS["scans"] == scans + 1  # a miss: scanned, then stored
    (stored,) = tmp_path.rglob("*.json")
    assert stored.name == f"{license_scan.text_digest(text)}.json"
    assert stored.parent.parent.name == license_scan.cache_version()  # ScanCode's and this code's version
    _fresh_memory()
    asked = license_scan._detector.cache_info()
    with license_scan.result_cache(tmp_path):
        assert license_scan.scancode_ids(text) == plain
    assert (license_scan.COUNTS["scans"], license_scan.COUNTS["cache_hits"]) == (scans + 1, hits + 1)
    assert license_scan._detector.cache_info() == asked  # the index was not even asked for
    stored.write_text("{torn")  # a damaged result is a miss: scanned again and rewritten
    _fresh_memory()
    with license_scan.result_cache(tmp_path):
        assert license_scan.scancode_ids(text) == plain
    assert license_scan.COUNTS["scans"] == scans + 2 and '"Apache-2.0"' in stored.read_text()


def test_a_repository_whose_license_texts_were_scanned_in_another_costs_no_scancode_call(tmp_path):
    import json

    import pyarrow.parquet as pq

    from ray_tasks.ingest import license_scan
    from ray_tasks.ingest.params import IngestParams
    from ray_tasks.ingest.sources import directory_repositories
    from ray_tasks.ingest.stage import LAST_RUN, ingest_to

    readme = "# Tool\n\nA tool.\n\n## License\n\n" + APACHE_NOTICE
    vendored = MIT.replace("2024 Example", "2031 Vendor Q")

    def corpus(name: str, repo: str) -> Path:
        root = tmp_path / name / repo
        (root / "third_party" / "v").mkdir(parents=True)
        (root / "README.md").write_text(readme)
        (root / "third_party" / "v" / "LICENSE").write_text(vendored)
        (root / f"{repo}.py").write_text(f"NAME = {repo!r}\n")
        return root.parent

    def run(source: Path, out: str, cache: Path | None) -> dict:
        _fresh_memory()
        (tmp_path / out).mkdir()
        ingest_to(tmp_path / out, list(directory_repositories(source, None)), IngestParams(), False,
                  work_dir=tmp_path / f"work-{out}", license_cache=cache)
        return json.loads((tmp_path / f"work-{out}" / LAST_RUN).read_text())

    cache = tmp_path / "scancode"
    (cache / "0123456789abcdef").mkdir(parents=True)  # results of another ScanCode version: pruned
    first = run(corpus("one", "alpha"), "first", cache)
    assert first["scancode_scans"] == 2 and not (cache / "0123456789abcdef").exists()
    asked = license_scan._detector.cache_info()
    other = corpus("two", "beta")  # another repository, the same license texts
    second = run(other, "second", cache)
    assert (second["scancode_scans"], second["scancode_cache_hits"]) == (0, 2)
    assert license_scan._detector.cache_info() == asked  # ScanCode's index not asked for
    without = run(other, "without", None)
    assert without["scancode_scans"] == 2
    assert pq.read_table(tmp_path / "second" / "repos.parquet").equals(pq.read_table(tmp_path / "without" / "repos.parquet"))
    licenses = pq.read_table(tmp_path / "second" / "repos.parquet").to_pylist()[0]
    assert licenses["license_files"] == "README.md,third_party/v/LICENSE"
    assert licenses["detected_licenses"] == "Apache-2.0,MIT"
    for name in ("files/part-00000.parquet", "rejected.parquet", "repos.parquet"):
        assert (tmp_path / "second" / name).read_bytes() == (tmp_path / "without" / name).read_bytes()
