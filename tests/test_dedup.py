import pyarrow as pa

from ray_tasks.dedup import exact_dedup


def _table(rows):
    return pa.Table.from_pylist(rows)


def test_keeps_one_copy_by_license_then_stars_then_name():
    rows = [
        dict(repo_name="b", path="x.py", content="same", length_bytes=4, sha256="h1", license_type="no_license", star_events_count=100),
        dict(repo_name="a", path="x.py", content="same", length_bytes=4, sha256="h1", license_type="permissive", star_events_count=1),
        dict(repo_name="c", path="x.py", content="same", length_bytes=4, sha256="h1", license_type="permissive", star_events_count=5),
        dict(repo_name="a", path="y.py", content="other", length_bytes=5, sha256="h2", license_type="permissive", star_events_count=1),
    ]
    kept, rejected = exact_dedup(_table(rows))
    assert kept.num_rows == 2
    survivors = {(r["repo_name"], r["sha256"]) for r in kept.to_pylist()}
    assert survivors == {("c", "h1"), ("a", "h2")}  # permissive beats stars; then more stars wins
    assert rejected.column("reason").to_pylist() == ["exact_duplicate", "exact_duplicate"]
    assert set(rejected.column("detail").to_pylist()) == {"c/x.py"}


def test_kept_rows_stay_in_input_order_and_empty_input():
    rows = [dict(repo_name=r, path="p", content=r, length_bytes=1, sha256=r, license_type="permissive") for r in "zyx"]
    kept, rejected = exact_dedup(_table(rows))
    assert kept.column("repo_name").to_pylist() == ["z", "y", "x"]
    assert rejected.num_rows == 0
    kept, rejected = exact_dedup(_table(rows).slice(0, 0))
    assert kept.num_rows == 0 and rejected.num_rows == 0
