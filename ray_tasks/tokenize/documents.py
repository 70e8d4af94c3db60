"""Repositories to token documents: the encoding kernel, run in parallel chunks.

One document per repository, in StarCoder2's repository-context layout
(ray_tasks/tokenize/split.py describes it) with FIM applied (ray_tasks/tokenize/fim.py).
Repositories are encoded in chunks of ``repos_per_task`` (within a part: parts hold whole
repositories): Ray tasks when the stage runs on Ray, plain calls otherwise. Every random choice
comes from a generator seeded by (seed, repository), so a document does not depend on its chunk,
its part, the worker count or Ray; encoded chunks are saved under the work dir
(ray_tasks/tokenize/cache.py), which is what the splits are written from, and what an
interrupted stage resumes from.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ray_tasks.tokenize.cache import cache_key, chunk_identity, load_chunk, save_chunk
from ray_tasks.tokenize.fim import FimCounts, document_parts
from ray_tasks.tokenize.inputs import Part
from ray_tasks.tokenize.params import TokenizeParams
from ray_tasks.tokenize.tokenizer import SPECIAL_TOKENS


def repo_rng(repo_name: str, seed: int, purpose: str = "doc") -> np.random.Generator:
    """The generator of one repository's random choices (so they do not depend on chunking)."""
    digest = hashlib.sha256(f"{purpose}:{seed}:{repo_name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def repository_document(
    repo_name: str, files: list[tuple[str, str, str]], params: TokenizeParams, special: dict[str, int],
    counts: FimCounts,
) -> tuple[list, list[str | None], bool]:
    """(parts, language of each part, has metadata) for one repository's files (path, content, language)."""
    rng = repo_rng(repo_name, params.seed)
    files = sorted(files)
    order = rng.permutation(len(files))
    with_meta = bool(rng.random() < params.repo_metadata_prob)
    texts = [f"{files[i][0]}\n{files[i][1]}" if with_meta else files[i][1] for i in order]
    langs = [files[i][2] for i in order]
    parts, owners = document_parts(
        repo_name if with_meta else None, texts, special, rng, params.fim_rate, params.fim_fragment_rate,
        params.fim_spm_rate, counts,
    )
    return parts, [langs[o] if o >= 0 else None for o in owners], with_meta


def encode_parts(tok, parts: list, part_langs: list[str | None]) -> tuple[np.ndarray, Counter]:
    """Token ids of a document; text parts encoded separately (no merge across FIM cuts)."""
    texts = [p for p in parts if isinstance(p, str)]
    encoded = iter(tok.encode_batch(texts, add_special_tokens=False)) if texts else iter(())
    ids: list[int] = []
    per_lang: Counter = Counter()
    for part, lang in zip(parts, part_langs):
        if isinstance(part, str):
            piece = next(encoded).ids
            ids.extend(piece)
            per_lang[lang or "metadata"] += len(piece)
        else:
            ids.append(part)
            per_lang["<special>"] += 1
    return np.asarray(ids, dtype=np.int64), per_lang


def encode_chunk(table: pa.Table, tokenizer_json: str, params: TokenizeParams) -> dict:
    """Encode the repositories of one chunk: a Ray task, or a plain call."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer_json)
    special = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    counts = FimCounts()
    per_lang: Counter = Counter()
    repos, docs, metadata = [], [], 0
    for repo_name, files in _by_repository(table):
        parts, langs, with_meta = repository_document(repo_name, files, params, special, counts)
        ids, lang_tokens = encode_parts(tok, parts, langs)
        repos.append(repo_name)
        docs.append(ids)
        per_lang.update(lang_tokens)
        metadata += with_meta
    return {"repos": repos, "docs": docs, "fim": asdict(counts), "lang_tokens": dict(per_lang), "metadata_docs": metadata}


def _by_repository(table: pa.Table) -> Iterator[tuple[str, list[tuple[str, str, str]]]]:
    langs = table.column("language").to_pylist() if "language" in table.column_names else [None] * table.num_rows
    by_repo: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for repo, path, content, lang in zip(
        table.column("repo_name").to_pylist(), table.column("path").to_pylist(), table.column("content").to_pylist(), langs
    ):
        by_repo[repo].append((path, content, lang or "unknown"))
    for repo in sorted(by_repo):
        yield repo, by_repo[repo]


ENCODE_COLUMNS = ("repo_name", "path", "content", "language", "sha256")


@dataclass
class Chunk:
    """One encoded chunk in the work dir: its key, and its JSON (repositories, lengths, counts)."""

    key: str
    meta: dict
    cached: bool
    """Loaded from an earlier (maybe interrupted) run rather than encoded by this one."""


def encode_repositories(parts: list[Part], repo_part: dict[str, int], tokenizer_json: str, params: TokenizeParams,
                        folder: Path, use_ray: bool, dtype: np.dtype) -> list[Chunk]:
    """Every repository encoded into chunks saved under ``folder``, part by part.

    A part's repositories go, in name order, in chunks of ``repos_per_task``; a chunk cached by
    an earlier run with the same tokenizer, params and files is loaded, not recomputed. On Ray
    at most twice the cluster's CPUs of chunks are submitted and not yet saved, and one part is
    read at a time, so memory holds one part and those chunks whatever the input's size."""
    config = [hashlib.sha256(tokenizer_json.encode()).hexdigest(), params.model_dump()]
    by_part: dict[int, list[str]] = defaultdict(list)
    for repo, p in repo_part.items():
        by_part[p].append(repo)
    chunks: list[Chunk] = []

    def todo() -> Iterator[tuple[str, pa.Table]]:
        for p in sorted(by_part):
            table = parts[p].read(ENCODE_COLUMNS)
            repos = sorted(by_part[p])
            for i in range(0, len(repos), params.repos_per_task):
                names = repos[i: i + params.repos_per_task]
                chunk = table.filter(pc.is_in(table.column("repo_name"), pa.array(names, table.schema.field("repo_name").type)))
                key = cache_key([*config, *chunk_identity(chunk)])
                meta = load_chunk(folder, key)
                if meta is not None:
                    chunks.append(Chunk(key, meta, True))
                else:
                    yield key, chunk
            del table

    results = _on_ray(todo(), tokenizer_json, params) if use_ray else (
        (key, encode_chunk(chunk, tokenizer_json, params)) for key, chunk in todo())
    for key, res in results:
        chunks.append(Chunk(key, save_chunk(folder, key, res, dtype), False))
    return chunks


def _on_ray(jobs: Iterator[tuple[str, pa.Table]], tokenizer_json: str, params: TokenizeParams) -> Iterator[tuple[str, dict]]:
    """``encode_chunk`` as Ray tasks, at most twice the cluster's CPUs in flight."""
    import ray

    remote = ray.remote(encode_chunk)
    tok_ref = ray.put(tokenizer_json)
    window = 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))
    pending: dict = {}

    def submit() -> bool:
        job = next(jobs, None)
        if job is None:
            return False
        pending[remote.remote(job[1], tok_ref, params)] = job[0]
        return True

    while len(pending) < window and submit():
        pass
    while pending:
        [ref], _ = ray.wait(list(pending), num_returns=1)
        key = pending.pop(ref)
        res = ray.get(ref)
        del ref
        yield key, res
        submit()
