"""MBPP-format problems from a file the user provides (JSON lines or a JSON list).

Each row has ``task_id``, ``text`` (the task), ``test_list`` (assert statements) and
optionally ``test_setup_code`` and ``code`` (the reference solution). Nothing is
downloaded: the Google MBPP test split, MBPP+ or a private set in this format all work.
As in bigcode-evaluation-harness (``bigcode_eval/tasks/mbpp.py`` of
https://github.com/bigcode-project/bigcode-evaluation-harness): the prompt is InCoder-style,
the task text and the first test inside a docstring; the completion is cut at the MBPP stop
sequences; the program is prompt + completion + every assert of ``test_list``.
"""

from __future__ import annotations

import json
from pathlib import Path

from ray_tasks.evaluate.humaneval import Problem

STOP_SEQUENCES = ["\nclass", "\nassert", '\n"""', "\nprint", "\nif", "\n<|/", "\n```", "<file_sep>", "<|endoftext|>"]


class MbppProblem(Problem):
    """A Problem whose test is a list of asserts (no ``check`` function)."""

    def generation_prompt(self, strip: bool) -> str:
        """MBPP prompts end in a docstring: given as they are."""
        return self.prompt

    def program(self, completion: str, prompt: str | None = None) -> str:
        prompt = self.prompt if prompt is None else prompt
        return f"{prompt}{completion}\n{self.test}\n"


def load_mbpp(path: str | Path, limit: int | None = None) -> list[MbppProblem]:
    text = Path(path).read_text()
    rows = json.loads(text) if text.lstrip().startswith("[") else [json.loads(x) for x in text.splitlines() if x.strip()]
    problems = []
    for n, row in enumerate(rows, 1):
        missing = {"task_id", "text", "test_list"} - row.keys()
        if missing:
            raise ValueError(f"{path}: row {n} lacks {sorted(missing)}")
        tests = list(row["test_list"])
        setup = row.get("test_setup_code") or ""
        prompt = f'"""\n{row["text"]}\n{tests[0]}\n"""\n'
        problems.append(MbppProblem(
            task_id=f"MBPP/{row['task_id']}", prompt=prompt, entry_point="", canonical_solution=row.get("code", ""),
            test="\n".join(([setup] if setup else []) + tests), stops=tuple(STOP_SEQUENCES),
        ))
    return problems[:limit] if limit else problems
