"""The frozen evaluation sample the promotion gate scores: raw source files of held-out repositories.

Why frozen: the validation split is redrawn whenever the data grows, so a score measured on it
today and one measured last month are on different text. The gate compares champion and
challenger in the same run anyway; the frozen sample also keeps the recorded scores comparable
across data versions. It is cut once, from the validation repositories of the tokenize stage
(``split.json``), and then kept as it is: a later run only loads it. It is rebuilt only when its
identity in params changes (``evaluate.gate.sample``: ``version``, ``bytes``, ``max_file_bytes``,
``seed``; bump ``version`` to re-draw it the same way from today's data).

Why raw bytes, not tokens: bits per byte on the same bytes compares models with different
tokenizers, and each model tokenizes the text itself.

The file (``data/gate_sample.json``, a persistent DVC output of the evaluate stage, so dvc.lock
records its md5 and the DVC remote keeps it) holds ``format, spec, built_from`` (the curated
files' path, the validation repositories it was drawn from and what the caller adds, e.g. DVC
md5s) and ``documents`` (``repo_name, path, content`` in the order drawn). Its md5 is the file's
own, which is what DVC records for a file output.

Memory: the draw reads the curated files one row group at a time, metadata first (the
validation repositories' file names and sizes), then only the chosen files' content, so it is
bounded by the sample's size, not the data's.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ray_tasks.datasets import is_dataset, iter_tables
from ray_tasks.evaluate.params import GateSampleParams
from ray_tasks.tables import write_json_atomic

FORMAT = "starflow-gate-sample/1"
IDENTITY = ("version", "bytes", "max_file_bytes", "seed")
"""The params that define which text the sample holds (the others say how it is scored)."""


@dataclass(frozen=True)
class FrozenSample:
    path: Path
    md5: str
    """md5 of the file: the sample's identity, and the md5 DVC records for it."""
    spec: dict[str, int]
    built_from: dict[str, Any]
    documents: list[dict[str, str]]

    @property
    def n_bytes(self) -> int:
        return sum(len(d["content"].encode("utf-8")) for d in self.documents)

    @property
    def repos(self) -> list[str]:
        return sorted({d["repo_name"] for d in self.documents})

    def summary(self) -> dict[str, Any]:
        """What the metrics and the gate's decision say about the sample."""
        return {"path": str(self.path), "md5": self.md5, "version": self.spec["version"], "spec": self.spec,
                "files": len(self.documents), "bytes": self.n_bytes, "repositories": len(self.repos)}


def spec_of(params: GateSampleParams) -> dict[str, int]:
    return {k: getattr(params, k) for k in IDENTITY}


def ensure_sample(path: str | Path, params: GateSampleParams, files_path: str | Path, val_repos: list[str],
                  built_from: dict[str, Any] | None = None) -> tuple[FrozenSample, bool]:
    """The stored sample if its identity matches ``params``; else a new one drawn and written.

    Returns (sample, built): ``built`` is True when this call drew it."""
    path = Path(path)
    if path.exists():
        stored = load_sample(path)
        if stored.spec == spec_of(params):
            return stored, False
    docs = draw(files_path, val_repos, params)
    if not docs:
        raise ValueError(f"gate sample: no file of the {len(val_repos)} validation repositories in {files_path} "
                         f"is at most {params.max_file_bytes} bytes")
    write_json_atomic({"format": FORMAT, "spec": spec_of(params),
                       "built_from": {"files": str(files_path), "val_repositories": sorted(val_repos),
                                      **(built_from or {})},
                       "documents": docs}, path)
    return load_sample(path), True


def load_sample(path: str | Path) -> FrozenSample:
    path = Path(path)
    raw = path.read_bytes()
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a gate sample (invalid JSON: {e}); delete it or bump evaluate.gate.sample.version") from e
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ValueError(f"{path}: format {obj.get('format') if isinstance(obj, dict) else None!r}, expected {FORMAT!r}")
    return FrozenSample(path=path, md5=hashlib.md5(raw).hexdigest(), spec=obj["spec"], built_from=obj["built_from"],
                        documents=obj["documents"])


def draw(files_path: str | Path, val_repos: list[str], params: GateSampleParams) -> list[dict[str, str]]:
    """Whole files of ``val_repos``, in the seeded hash order of ``repo_name/path``, until
    ``params.bytes`` is reached; files over ``max_file_bytes`` are passed over.

    The hash order makes the choice independent of how the files are stored (row order, parts)."""
    wanted = pa.array(sorted(set(val_repos)), pa.string())
    candidates: list[tuple[bytes, str, str, int]] = []
    for table in _row_groups(files_path, ["repo_name", "path", "length_bytes"]):
        table = table.filter(pc.is_in(table["repo_name"], value_set=wanted))
        for repo, name, size in zip(*(table[c].to_pylist() for c in ("repo_name", "path", "length_bytes"))):
            candidates.append((_rank(params.seed, repo, name), repo, name, size))
    chosen: dict[tuple[str, str], bytes] = {}
    total = 0
    for rank, repo, name, size in sorted(candidates):
        if total >= params.bytes:
            break
        if size <= params.max_file_bytes:
            chosen[(repo, name)] = rank
            total += size
    contents: dict[tuple[str, str], str] = {}
    repos = pa.array(sorted({r for r, _ in chosen}), pa.string())
    for table in _row_groups(files_path, ["repo_name", "path", "content"]):
        table = table.filter(pc.is_in(table["repo_name"], value_set=repos))
        for repo, name, content in zip(*(table[c].to_pylist() for c in ("repo_name", "path", "content"))):
            if (repo, name) in chosen:
                contents[(repo, name)] = content
    order = sorted(chosen, key=chosen.__getitem__)
    return [{"repo_name": r, "path": p, "content": contents[(r, p)]} for r, p in order if (r, p) in contents]


def repos_in_training(sample: FrozenSample, train_repos: list[str]) -> list[str]:
    """Sample repositories that today's split trains on (the split moved as the data grew): the
    gate's figure is then no longer held-out text for models trained on them."""
    return sorted(set(sample.repos) & set(train_repos))


def _rank(seed: int, repo: str, path: str) -> bytes:
    return hashlib.sha256(f"gate-sample:{seed}:{repo}/{path}".encode()).digest()


def _row_groups(path: str | Path, columns: list[str]) -> Iterator[pa.Table]:
    """A Parquet file or a partitioned dataset folder, one row group at a time."""
    if is_dataset(path):
        yield from iter_tables(path, columns)
        return
    pf = pq.ParquetFile(path)
    for i in range(pf.num_row_groups):
        yield pf.read_row_group(i, columns=columns)
