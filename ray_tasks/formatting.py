"""Train/validation split by repository.

The repository-context layout itself (StarCoder2, stack_v2_curation.md §10.1) is
built with FIM in ``ray_tasks/fim.py`` and ``ray_tasks/prepare.py``: one document per
repository, files in seeded random order, with probability ``repo_metadata_prob``

    <repo_name>{repo}<file_sep>{path1}\n{code1}<file_sep>{path2}\n{code2}...<|endoftext|>

otherwise ``<file_sep>{code1}<file_sep>{code2}...<|endoftext|>``.
"""

from __future__ import annotations

import hashlib


def split_repositories(repos: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, validation) split by repository hash; both non-empty when there are 2+ repos.

    A repository lands wholly in one split, so validation measures generalisation to
    unseen repositories, not memorised neighbours of training files.
    """
    scored = sorted(set(repos), key=lambda r: hashlib.sha256(f"split:{seed}:{r}".encode()).hexdigest())
    n_val = max(1, round(len(scored) * val_fraction)) if len(scored) > 1 else 0
    return sorted(scored[n_val:]), sorted(scored[:n_val])
