"""Single-line FIM exact match (SantaCoder-style), on the examples the tokenize stage cut.

The prompt is PSM: ``<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>``; the
completion counts as correct when its first line equals the held-out line after
stripping whitespace. Context is capped in characters on both sides so that the
FIM markers always survive in the model's window.
"""

from __future__ import annotations

import json
from pathlib import Path

from ray_tasks.tokenize.tokenizer import ENDOFTEXT, FILE_SEP, FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX


def load_examples(path: str | Path, limit: int | None) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows[:limit] if limit else rows


def prompt(example: dict, context_chars: int) -> str:
    prefix = example["prefix"][-context_chars:]
    suffix = example["suffix"][:context_chars]
    return f"{FIM_PREFIX}{prefix}{FIM_SUFFIX}{suffix}{FIM_MIDDLE}"


STOP_SEQUENCES = [ENDOFTEXT, FILE_SEP, FIM_PREFIX, "<|filename|>"]
"""Where an infilling ends (harness task ``starcoder_fim``); the line ends at its first newline."""


def first_line(completion: str) -> str:
    for stop in STOP_SEQUENCES:
        completion = completion.split(stop)[0]
    return completion.split("\n")[0]


def exact_match(examples: list[dict], completions: list[str]) -> tuple[float, list[dict]]:
    records = [
        {"task_id": ex["task_id"], "expected": ex["middle"], "got": first_line(c),
         "correct": first_line(c).strip() == ex["middle"].strip()}
        for ex, c in zip(examples, completions, strict=True)
    ]
    return (sum(r["correct"] for r in records) / len(records) if records else 0.0), records
