import pyarrow as pa

from ray_tasks.curate import build_filters, split_annotated
from ray_tasks.filters import AlphaFilter, LineLengthFilter, add_language, apply_filters
from ray_tasks.ingest import ingest
from ray_tasks.language import detect_language, language_count
from ray_tasks.ray_exec import map_batches, map_local
from ray_tasks.sources import directory_repositories

DEFAULTS = dict(max_lines=100_000, max_avg_line_length=100, max_line_length=1000, exempt_max_line_length=100_000, min_alpha_fraction=0.25)


def test_language_by_name_and_extension():
    assert detect_language("pkg/a.py") == "Python"
    assert detect_language("Makefile") == "Makefile"
    assert detect_language("src/lib.rs") == "Rust"
    assert detect_language("x/README.md") == "Markdown"
    assert detect_language("blob.unknownext") is None
    assert language_count() > 400


def _batch(contents, paths=None):
    paths = paths or [f"f{i}.py" for i in range(len(contents))]
    return add_language(pa.table({"content": contents, "path": paths}))


def test_line_length_rules_and_exemptions():
    f = LineLengthFilter()
    long_line = "x = '" + "a" * 1100 + "'\n"
    wide = "\n".join(["a" * 150] * 10)
    assert f(_batch([long_line, wide, "ok = 1\n"])) == ["max_line_length", "avg_line_length", None]
    # JSON is exempt from the 1000-char cap (only the 100k cap applies).
    assert f(_batch(['{"a": "' + "b" * 5000 + '"}'], ["data.json"])) == [None]


def test_alpha_fraction():
    f = AlphaFilter(0.25)
    assert f(_batch(["x = [" + "0, " * 100 + "]", "def hello_world(): pass", ""])) == ["alpha_fraction", None, "alpha_fraction"]


def test_curate_on_ray_equals_local(corpus, ray_session):
    files, _ = ingest(list(directory_repositories(corpus, None)), 10 * 2**20)
    filters = build_filters(["permissive", "no_license"], True, **DEFAULTS)
    local = map_local(files, apply_filters, 7, {"filters": filters})
    on_ray = map_batches(files, apply_filters, 7, {"filters": filters})
    assert on_ray.equals(local)
    kept, rejected = split_annotated(local)
    reasons = dict(zip(rejected.column("path").to_pylist(), rejected.column("reason").to_pylist()))
    assert reasons["src/main.py"] == "license:non_permissive"
    assert reasons["data.py"] == "alpha_fraction"
    assert reasons["minified.js"] == "max_line_length"
    assert reasons["LICENSE"] == "unknown_language"
    assert kept.num_rows + rejected.num_rows == files.num_rows
    assert set(kept.column("language").to_pylist()) == {"Python"}
