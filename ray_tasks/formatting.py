"""Repository-context formatting (StarCoder2, stack_v2_curation.md §10.1).

One training example is one repository with its files in random order. With
probability ``metadata_prob`` it carries its name and file paths:

    <repo_name>{repo}<file_sep>{path1}\n{code1}<file_sep>{path2}\n{code2}...<|endoftext|>

otherwise only the code: ``<file_sep>{code1}<file_sep>{code2}...<|endoftext|>``.
"""

from __future__ import annotations

import hashlib
import random
from typing import Iterator

import pyarrow as pa

from ray_tasks.tokenizer import ENDOFTEXT, FILE_SEP, REPO_NAME


def repo_rng(repo_name: str, seed: int) -> random.Random:
    """A per-repository RNG, so one repository's format does not depend on the others."""
    digest = hashlib.sha256(f"{seed}:{repo_name}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def format_repository(repo_name: str, files: list[tuple[str, str]], metadata_prob: float, seed: int) -> str:
    rng = repo_rng(repo_name, seed)
    files = sorted(files)
    rng.shuffle(files)
    if rng.random() < metadata_prob:
        body = "".join(f"{FILE_SEP}{path}\n{code}" for path, code in files)
        return f"{REPO_NAME}{repo_name}{body}{ENDOFTEXT}"
    return "".join(f"{FILE_SEP}{code}" for _, code in files) + ENDOFTEXT


def repository_documents(table: pa.Table, metadata_prob: float, seed: int) -> Iterator[tuple[str, str]]:
    """(repo_name, formatted document) for each repository in a files table."""
    by_repo: dict[str, list[tuple[str, str]]] = {}
    for repo, path, content in zip(
        table.column("repo_name").to_pylist(), table.column("path").to_pylist(), table.column("content").to_pylist()
    ):
        by_repo.setdefault(repo, []).append((path, content))
    for repo in sorted(by_repo):
        yield repo, format_repository(repo, by_repo[repo], metadata_prob, seed)


def split_repositories(repos: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, validation) split by repository hash; both non-empty when there are 2+ repos."""
    scored = sorted(repos, key=lambda r: hashlib.sha256(f"split:{seed}:{r}".encode()).hexdigest())
    n_val = max(1, round(len(repos) * val_fraction)) if len(repos) > 1 else 0
    val = sorted(scored[:n_val])
    train = sorted(scored[n_val:])
    return train, val
