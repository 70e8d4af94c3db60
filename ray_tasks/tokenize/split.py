"""Train/validation split by repository.

The repository-context layout itself (StarCoder2, https://arxiv.org/abs/2402.19173) is
built with FIM in ``ray_tasks/tokenize/fim.py`` and ``ray_tasks/tokenize/documents.py``: one document per
repository, files in seeded random order, with probability ``repo_metadata_prob``

    <repo_name>{repo}<file_sep>{path1}\n{code1}<file_sep>{path2}\n{code2}...<|endoftext|>

otherwise ``<file_sep>{code1}<file_sep>{code2}...<|endoftext|>``.
"""

from __future__ import annotations

import hashlib


def split_repositories(repos: list[str], val_fraction: float, seed: int,
                       sizes: dict[str, int] | None = None) -> tuple[list[str], list[str]]:
    """(train, validation) split by repository hash; both non-empty when there are 2+ repos.

    A repository lands wholly in one split, so validation measures generalisation to
    unseen repositories, not memorised neighbours of training files. With ``sizes``
    (bytes per repository) validation takes repositories in hash order until it holds
    ``val_fraction`` of the bytes, skipping those that would overshoot: counting
    repositories instead gave the default corpus, where a few repositories hold most of
    the code, a validation split of 7k tokens (28 sequences), too few for a stable
    perplexity. Without ``sizes`` it takes ``val_fraction`` of the repositories.
    """
    scored = sorted(set(repos), key=lambda r: hashlib.sha256(f"split:{seed}:{r}".encode()).hexdigest())
    if len(scored) < 2:
        return sorted(scored), []
    if sizes is None:
        n_val = max(1, round(len(scored) * val_fraction))
        return sorted(scored[n_val:]), sorted(scored[:n_val])
    budget = val_fraction * sum(sizes.get(r, 0) for r in scored)
    val, taken = [], 0
    for r in scored[:-1]:  # the last one in hash order always trains, so train is never empty
        if taken + sizes.get(r, 0) <= budget:
            val.append(r)
            taken += sizes.get(r, 0)
    if not val:
        val = [scored[0]]  # none fits the budget: the first in hash order, as when counting repositories
    chosen = set(val)
    return sorted(r for r in scored if r not in chosen), sorted(val)
