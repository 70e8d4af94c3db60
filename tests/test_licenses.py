from email.message import Message

from conftest import GPL, MIT
from ray_tasks.licenses import (
    NO_LICENSE, NON_PERMISSIVE, PERMISSIVE, classify, is_license_file, licenses_from_metadata,
    licenses_from_text, spdx_from_expression,
)


def _meta(**fields) -> Message:
    m = Message()
    for k, v in fields.items():
        for item in v if isinstance(v, list) else [v]:
            m[k.replace("_", "-")] = item
    return m


def test_classify_follows_the_paper():
    assert classify(["MIT"]) == PERMISSIVE
    assert classify(["MIT", "Apache-2.0"]) == PERMISSIVE
    assert classify([]) == NO_LICENSE
    assert classify(["GPL-3.0"]) == NON_PERMISSIVE
    assert classify(["MIT", "MPL-2.0"]) == NON_PERMISSIVE  # any non-permissive taints the repo


def test_texts():
    assert licenses_from_text(MIT) == {"MIT"}
    assert licenses_from_text(GPL) == {"GPL-3.0"}
    bsd3 = "Redistribution and use in source and binary forms ... Neither the name of the copyright holder"
    assert licenses_from_text(bsd3) == {"BSD-3-Clause"}
    assert licenses_from_text("Redistribution and use in source and binary forms, with or without") == {"BSD-2-Clause"}


def test_metadata_precedence():
    assert licenses_from_metadata(_meta(License_Expression="MIT OR Apache-2.0", License="GPL")) == {"MIT", "Apache-2.0"}
    assert licenses_from_metadata(_meta(Classifier=["License :: OSI Approved :: BSD License"])) == {"BSD-3-Clause"}
    assert licenses_from_metadata(_meta(License="Apache 2.0")) == {"Apache-2.0"}
    assert licenses_from_metadata(_meta(License="UNKNOWN")) == set()
    assert spdx_from_expression("(MIT AND BSD-3-Clause) OR GPL-2.0+ WITH Classpath-exception-2.0") == {
        "MIT", "BSD-3-Clause", "GPL-2.0", "Classpath-exception-2.0"}


def test_license_file_names():
    for name in ["LICENSE", "LICENSE.txt", "COPYING", "license-mit", "NOTICE", "README.md"]:
        assert is_license_file(name), name
    assert not is_license_file("setup.py")
