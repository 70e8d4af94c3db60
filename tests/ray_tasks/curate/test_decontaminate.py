"""Decontamination: HumanEval planted with other indentation and case is dropped; look-alikes are kept."""

from __future__ import annotations

import json
import pickle
import textwrap

import pyarrow as pa
import pytest

from ray_tasks.curate.decontaminate import (
    DecontaminationFilter, build_matcher, contamination_report, decontaminate, humaneval_items,
    load_benchmarks, normalise, prompt_docstring,
)
from ray_tasks.curate.params import BenchmarkFileParams, DecontaminationParams
from ray_tasks.evaluate.humaneval import load_problems

TRIVIAL = {"HumanEval/23", "HumanEval/28", "HumanEval/41", "HumanEval/53"}


@pytest.fixture(scope="module")
def problems():
    return load_problems()


@pytest.fixture(scope="module")
def he_filter():
    return DecontaminationFilter(build_matcher(DecontaminationParams()))


def _files(contents):
    n = len(contents)
    return pa.table({"repo_name": [f"r{i}" for i in range(n)], "path": [f"f{i}.py" for i in range(n)],
                     "sha256": [f"s{i}" for i in range(n)], "content": contents})


def _disguise(code: str) -> str:
    """Re-indent with 2 spaces instead of 4 (tabs stay), upper-case it, wrap it in other code."""
    body = "\n".join(line.replace("    ", "  ") for line in code.splitlines())
    return f"# vendored helper\nimport os\n\n{body.upper()}\n\nprint(os.getcwd())\n"


def test_every_planted_prompt_is_dropped(problems, he_filter):
    files = _files([_disguise(p.prompt + "    pass\n") for p in problems])
    reasons = he_filter(files)
    assert reasons == ["contamination:humaneval"] * len(problems)


def test_every_planted_canonical_solution_is_dropped(problems, he_filter):
    planted = [p for p in problems if p.task_id not in TRIVIAL]
    assert len(planted) == 160
    files = _files([_disguise(f"def solve(*args):\n{p.canonical_solution}") for p in planted])
    items = he_filter.explain(files)
    assert all(items), [p.task_id for p, i in zip(planted, items) if i is None]
    # The item is the planted problem's own solution, or one contained in it.
    for p, item in zip(planted, items):
        assert item.field == "canonical_solution"
        assert item.item_id == p.task_id or normalise(item.text) in normalise(p.canonical_solution)


def test_unrelated_files_with_the_same_function_names_are_kept(problems, he_filter):
    unrelated = []
    for p in problems:
        unrelated.append(textwrap.dedent(f'''
            from mylib import {p.entry_point}

            def test_{p.entry_point}():
                """Check {p.entry_point} on a case of our own."""
                result = {p.entry_point}(*make_args())
                assert result is not None
            '''))
    assert he_filter(_files(unrelated)) == [None] * len(problems)
    # The four trivial solutions are not benchmark strings (the seed's exclusions).
    assert he_filter(_files(["def add(x, y):\n    return x + y\n", "n = len(string)\nreturn len(string)\n"])) == [None, None]


def test_report_names_the_item_that_matched(problems, he_filter):
    p = problems[12]
    files = _files(["x = 1\n", _disguise(p.prompt)])
    annotated = files.append_column("reason", pa.array(he_filter(files), pa.string()))
    report = contamination_report(annotated, he_filter.matcher)
    assert report.to_pylist() == [{"repo_name": "r1", "path": "f1.py", "sha256": "s1", "benchmark": "humaneval",
                                   "item_id": p.task_id, "field": "docstring"}]


def test_benchmark_files_by_path(tmp_path):
    mbpp = tmp_path / "mbpp.jsonl"
    rows = [{"task_id": 11, "text": "Write a python function to remove first and last occurrence of a given character from the string.",
             "code": "def remove_Occ(s,ch): \r\n    for i in range(len(s)): \r\n        if (s[i] == ch): \r\n            s = s[0 : i] + s[i + 1:] \r\n            break\r\n    return s "}]
    mbpp.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ds1000 = tmp_path / "ds1000.jsonl"
    ds1000.write_text(json.dumps({"prompt": "Problem: reshape a 1d numpy array into 2 columns of equal length\nBEGIN SOLUTION\nx.reshape(-1, 2)"}) + "\n")
    specs = [BenchmarkFileParams(name="mbpp", path=str(mbpp), fields=["text", "code"], id_field="task_id"),
             BenchmarkFileParams(name="ds1000", path=str(ds1000), fields=["prompt"],
                                 cut_before=["SOLUTION START", "BEGIN SOLUTION"])]
    f = DecontaminationFilter(build_matcher(DecontaminationParams(humaneval=False, files=specs)))
    f = pickle.loads(pickle.dumps(f))  # ships to Ray workers
    files = _files([
        'def f():\n    """WRITE A PYTHON FUNCTION TO REMOVE FIRST AND LAST OCCURRENCE\n    of a given character from the string."""\n',
        "def remove_Occ(s, ch):\n  for i in range(len(s)):\n    if (s[i] == ch):\n      s = s[0 : i] + s[i + 1:]\n      break\n  return s\n",
        '"""problem: Reshape a 1d numpy array\n   into 2 columns of equal length"""\n',
        "y = x.reshape(-1, 2)\n",  # after the DS-1000 cut: the solution is not a benchmark string
    ])
    assert f(files) == ["contamination:mbpp", "contamination:mbpp", "contamination:ds1000", None]
    assert [(i.item_id, i.field) for i in f.explain(files)[:2]] == [("11", "text"), ("11", "code")]


def _only(name: str, path, fields: list[str]) -> DecontaminationParams:
    return DecontaminationParams(humaneval=False, files=[BenchmarkFileParams(name=name, path=str(path), fields=fields)])


def test_bad_benchmark_files_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_benchmarks(_only("apps", tmp_path / "nope.jsonl", ["question"]))
    bad = tmp_path / "gsm8k.jsonl"
    bad.write_text('{"problem": "x"}\n')
    with pytest.raises(ValueError, match=r"gsm8k.jsonl:1: no field \['question'\]"):
        load_benchmarks(_only("gsm8k", bad, ["question"]))
    bad.write_text("{not json\n")
    with pytest.raises(ValueError, match="not JSON"):
        load_benchmarks(_only("gsm8k", bad, ["question"]))
    with pytest.raises(ValueError, match="no benchmark strings"):
        build_matcher(DecontaminationParams(humaneval=False))


def test_humaneval_items_follow_the_seed(problems):
    items = humaneval_items()
    assert sum(i.field == "docstring" for i in items) == 164
    assert sum(i.field == "canonical_solution" for i in items) == 160
    two_functions = next(p for p in problems if p.prompt.count('"""') == 4)
    assert prompt_docstring(two_functions.prompt) in two_functions.prompt.split('"""')[3]


def test_cli_decontaminate(tmp_path, problems):
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from flows.cli import app

    src = tmp_path / "files.parquet"
    pq.write_table(_files(["x = 1\n", _disguise(problems[0].prompt)]), src)
    result = CliRunner().invoke(app, ["decontaminate", "--input", str(src), "--output", str(tmp_path / "out"),
                                      "--params", str(tmp_path / "none.yaml")])
    assert result.exit_code == 0, result.output
    assert pq.read_table(tmp_path / "out" / "files.parquet").column("content").to_pylist() == ["x = 1\n"]
    report = pq.read_table(tmp_path / "out" / "contamination.parquet").to_pylist()
    assert [(r["path"], r["item_id"]) for r in report] == [("f1.py", "HumanEval/0")]
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["files_contaminated"] == 1 and stats["contaminated_by_benchmark"] == {"humaneval": 1}
    assert stats["files_in"] == 2 and stats["files_kept"] == 1 and stats["benchmark_strings"] == 324


def test_decontaminate_alone_reports_as_the_stage_does(problems, he_filter):
    """The command's function: the stage's report (same schema), missing id columns as nulls."""
    files = _files(["x = 1\n", _disguise(problems[5].prompt)]).drop_columns(["sha256"])
    kept, report, stats = decontaminate(files, he_filter.matcher)
    assert kept.column("content").to_pylist() == ["x = 1\n"] and kept.column_names == files.column_names
    assert report.to_pylist() == [{"repo_name": "r1", "path": "f1.py", "sha256": None, "benchmark": "humaneval",
                                   "item_id": problems[5].task_id, "field": "docstring"}]
    assert stats == {"files_in": 2, "files_kept": 1, "files_contaminated": 1,
                     "contaminated_by_benchmark": {"humaneval": 1}, "benchmark_strings": len(he_filter.matcher.items)}


def test_report_of_a_clean_table_is_empty(he_filter):
    files = _files(["x = 1\n"])
    annotated = files.append_column("reason", pa.array([None], pa.string()))
    report = contamination_report(annotated, he_filter.matcher)
    assert report.num_rows == 0 and "item_id" in report.column_names
