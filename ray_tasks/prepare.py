"""Tokenize stage logic: train the tokenizer, format repositories, pack shards.

Output folder layout (the shard format ``models/data.py`` reads):
``tokenizer/`` (HF files), ``train.npy``, ``val.npy``, ``meta.json``, ``split.json``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from ray_tasks.formatting import repository_documents, split_repositories
from ray_tasks.packing import pack
from ray_tasks.tokenizer import SPECIAL_TOKENS, save_hf_tokenizer, train_bpe


def tokenizer_corpus(files: pa.Table, max_bytes: int, seed: int) -> Iterator[str]:
    """A deterministic sample of file contents, about ``max_bytes`` in all."""
    order = sorted(range(files.num_rows), key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).digest())
    content = files.column("content")
    used = 0
    for i in order:
        text = content[i].as_py()
        yield text
        used += len(text)
        if used >= max_bytes:
            return


def prepare(
    files: pa.Table,
    out: Path,
    vocab_size: int,
    min_frequency: int,
    train_max_bytes: int,
    seq_len: int,
    val_fraction: float,
    repo_metadata_prob: float,
    seed: int,
) -> dict:
    if files.num_rows == 0:
        raise ValueError("tokenize: the curated table is empty; nothing to train on")
    tok = train_bpe(tokenizer_corpus(files, train_max_bytes, seed), vocab_size, min_frequency)
    save_hf_tokenizer(tok, out / "tokenizer", model_max_length=seq_len)

    docs = dict(repository_documents(files, repo_metadata_prob, seed))
    train_repos, val_repos = split_repositories(sorted(docs), val_fraction, seed)
    if not val_repos:
        raise ValueError("tokenize: need at least 2 repositories to split train/validation by repository")
    stats: dict = {"vocab_size": tok.get_vocab_size(), "seq_len": seq_len, "repositories": len(docs)}
    for split, repos in (("train", train_repos), ("val", val_repos)):
        encodings = tok.encode_batch([docs[r] for r in repos], add_special_tokens=False)
        arr, dropped = pack((e.ids for e in encodings), seq_len, tok.get_vocab_size())
        if len(arr) == 0:
            raise ValueError(f"tokenize: the {split} split has fewer than seq_len={seq_len} tokens")
        np.save(out / f"{split}.npy", arr)
        stats[f"{split}_repositories"] = len(repos)
        stats[f"{split}_sequences"] = int(arr.shape[0])
        stats[f"{split}_tokens"] = int(arr.size)
        stats[f"{split}_tail_tokens_dropped"] = dropped
        stats["dtype"] = str(arr.dtype)
    chars = sum(len(d) for d in docs.values())
    stats["chars_per_token"] = chars / max(stats["train_tokens"] + stats["val_tokens"], 1)
    stats["special_tokens"] = len(SPECIAL_TOKENS)
    (out / "meta.json").write_text(json.dumps(stats, indent=2, sort_keys=True))
    (out / "split.json").write_text(json.dumps({"train": train_repos, "val": val_repos}, indent=2))
    return stats
