"""Fill-in-the-middle as in StarCoder2 (https://arxiv.org/abs/2402.19173), applied while tokenizing.

A repository document is a list of fragments separated by ``<file_sep>``. With
probability ``fim_rate`` the document is a FIM candidate; each of its file
fragments is then transformed with probability ``fragment_rate`` (the
``<repo_name>`` metadata fragment never is). A transformed fragment is cut at two
uniformly drawn character positions into prefix/middle/suffix and laid out in
the BigCode Megatron fork's token order (https://github.com/bigcode-project/Megatron-LM,
``megatron/data/gpt_dataset.py``):

    PSM: <fim_prefix> prefix <fim_suffix> suffix <fim_middle> middle
    SPM: <fim_prefix> <fim_suffix> suffix <fim_middle> prefix middle   (probability spm_rate)

Documents are represented as "parts": special-token ids (int) and text (str).
Text parts are encoded separately, so BPE never merges across a FIM boundary,
exactly as when the reference re-tokenizes each piece.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Part = int | str


@dataclass(frozen=True)
class FimIds:
    prefix: int
    middle: int
    suffix: int


@dataclass
class FimCounts:
    documents: int = 0
    fim_documents: int = 0
    fragments: int = 0
    candidate_fragments: int = 0
    """File fragments inside FIM-candidate documents (the denominator of the fragment rate)."""
    fim_fragments: int = 0
    spm_fragments: int = 0

    def add(self, other: FimCounts) -> None:
        for name in ("documents", "fim_documents", "fragments", "candidate_fragments", "fim_fragments", "spm_fragments"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def split_points(length: int, rng: np.random.Generator) -> tuple[int, int]:
    """Two sorted cut points drawn uniformly from [0, length] (either part may be empty)."""
    a, b = rng.integers(0, length + 1, size=2)
    return (int(a), int(b)) if a <= b else (int(b), int(a))


def fim_parts(text: str, cut: tuple[int, int], spm: bool, ids: FimIds) -> list[Part]:
    prefix, middle, suffix = text[: cut[0]], text[cut[0] : cut[1]], text[cut[1] :]
    if spm:
        return [ids.prefix, ids.suffix, suffix, ids.middle, prefix, middle]
    return [ids.prefix, prefix, ids.suffix, suffix, ids.middle, middle]


def document_parts(
    repo_name: str | None,
    files: list[str],
    special: dict[str, int],
    rng: np.random.Generator,
    fim_rate: float,
    fragment_rate: float,
    spm_rate: float,
    counts: FimCounts,
) -> tuple[list[Part], list[int]]:
    """(parts, owners) of one repository document, FIM applied.

    ``repo_name`` is None for the no-metadata form; ``files`` are the file
    fragments (``path\ncode`` or ``code``) in document order. ``owners[i]`` is the
    index of the file that part ``i`` came from, -1 for metadata and separators.
    """
    ids = FimIds(special["<fim_prefix>"], special["<fim_middle>"], special["<fim_suffix>"])
    counts.documents += 1
    candidate = bool(rng.random() < fim_rate)
    counts.fim_documents += candidate
    parts: list[Part] = [special["<repo_name>"], repo_name] if repo_name is not None else []
    owners = [-1] * len(parts)
    for i, text in enumerate(files):
        parts.append(special["<file_sep>"])
        owners.append(-1)
        counts.fragments += 1
        counts.candidate_fragments += candidate
        if candidate and rng.random() < fragment_rate:
            spm = bool(rng.random() < spm_rate)
            piece = fim_parts(text, split_points(len(text), rng), spm, ids)
            counts.fim_fragments += 1
            counts.spm_fragments += spm
        else:
            piece = [text]
        parts.extend(piece)
        owners.extend([i] * len(piece))
    parts.append(special["<|endoftext|>"])
    owners.append(-1)
    return parts, owners
