import math

import pytest

from ray_tasks.code_eval import score
from ray_tasks.humaneval import load_problems, program, truncate
from ray_tasks.passk import mean_pass_at_k, pass_at_k
from ray_tasks.sandbox import network_isolation_available, run_program


def test_pass_at_k_matches_the_closed_form():
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 10, 5) == 1.0
    assert math.isclose(pass_at_k(10, 3, 1), 0.3)
    assert math.isclose(pass_at_k(5, 2, 2), 1 - math.comb(3, 2) / math.comb(5, 2))
    assert mean_pass_at_k([(4, 1), (4, 3)], 1) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def test_truncate_at_stop_sequences():
    assert truncate("    return x\n\ndef other():\n    pass") == "    return x\n"
    assert truncate("    return 1<|endoftext|>junk") == "    return 1"


def test_sandbox_outcomes():
    assert run_program("assert 1 + 1 == 2", 5, 512).status == "passed"
    assert run_program("assert False", 5, 512).status == "failed"
    assert run_program("while True: pass", 1, 512).status == "timeout"
    big = run_program("x = bytearray(2_000_000_000)", 5, 256)
    assert big.status == "failed" and "MemoryError" in big.stderr_tail
    # The environment is empty and the working directory is a fresh temp dir.
    assert run_program("import os; assert 'HOME' in os.environ and not os.listdir('.') == ['x']", 5, 512).status == "passed"


def test_sandbox_has_no_network_when_isolation_is_available():
    if not network_isolation_available():
        pytest.skip("no network namespaces for this user here")
    probe = "import socket; s = socket.socket(); s.settimeout(2); s.connect(('127.0.0.1', 22))"
    result = run_program(probe, 5, 512)
    assert result.status == "failed" and result.network_isolated


def test_canonical_solutions_pass_and_wrong_ones_fail(ray_session):
    problems = load_problems(limit=12)
    assert len(load_problems()) == 164
    metrics, records = score(problems, [[p.canonical_solution] for p in problems], [1], 5.0, 1024)
    assert metrics["pass@1"] == 1.0, [r for r in records if r["status"] != "passed"]
    wrong = [["    return None\n"] for _ in problems]
    metrics, _ = score(problems, wrong, [1], 5.0, 1024)
    assert metrics["pass@1"] == 0.0
    assert "check(" in program(problems[0], "    pass\n")


def test_fim_exact_match_scoring():
    from ray_tasks.fim_eval import exact_match, first_line, prompt

    ex = {"task_id": "fim/0", "prefix": "a = 1\n" * 500, "middle": "    b = 2", "suffix": "\nc = 3\n" * 500}
    p = prompt(ex, 100)
    assert p.startswith("<fim_prefix>") and "<fim_suffix>" in p and p.endswith("<fim_middle>") and len(p) < 260
    assert first_line("b = 2\nmore<|endoftext|>") == "b = 2"
    score, records = exact_match([ex, {**ex, "task_id": "fim/1"}], ["b = 2  \nrest", "b = 3"])
    assert score == 0.5 and [r["correct"] for r in records] == [True, False]
