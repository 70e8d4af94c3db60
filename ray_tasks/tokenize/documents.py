"""Repositories to token documents: the encoding kernel, run in parallel chunks.

One document per repository, in StarCoder2's repository-context layout
(ray_tasks/tokenize/split.py describes it) with FIM applied (ray_tasks/tokenize/fim.py).
Repositories are encoded in chunks of ``repos_per_task``: Ray tasks when the stage runs on
Ray, plain calls otherwise. Every random choice comes from a generator seeded by (seed,
repository), so a document does not depend on its chunk, the worker count or Ray; encoded
chunks are cached under the work dir (ray_tasks/tokenize/cache.py) so an interrupted stage
resumes.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ray_tasks.tokenize.cache import cache_key, chunk_identity, load_chunk, save_chunk
from ray_tasks.tokenize.fim import FimCounts, document_parts
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


def encode_repositories(files: pa.Table, tokenizer_json: str, params: TokenizeParams, repos: list[str],
                        work: Path | None, use_ray: bool) -> tuple[list[dict], set[int]]:
    """(chunk results in repository order, indices of the chunks loaded from the cache).

    Repositories go in chunks of ``repos_per_task``; a chunk cached by an earlier run with the
    same tokenizer, params and files is loaded, not recomputed."""
    chunks = [repos[i: i + params.repos_per_task] for i in range(0, len(repos), params.repos_per_task)]
    tables = [files.filter(pc.is_in(files.column("repo_name"), pa.array(c))) for c in chunks]
    keys = [cache_key([tokenizer_json, params.model_dump(), *chunk_identity(t)]) for t in tables]
    cache = (work / "chunks") if work else None
    results: list[dict | None] = [load_chunk(cache / f"{k}.npz") if cache else None for k in keys]
    todo = [i for i, r in enumerate(results) if r is None]
    cached = set(range(len(results))) - set(todo)
    if use_ray and todo:
        import ray

        remote = ray.remote(encode_chunk)
        tok_ref = ray.put(tokenizer_json)
        refs = {i: remote.remote(tables[i], tok_ref, params) for i in todo}
        computed = {i: ray.get(ref) for i, ref in refs.items()}
    else:
        computed = {i: encode_chunk(tables[i], tokenizer_json, params) for i in todo}
    for i, res in computed.items():
        results[i] = res
        if cache:
            save_chunk(cache / f"{keys[i]}.npz", res)
    return results, cached  # type: ignore[return-value]
