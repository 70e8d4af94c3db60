"""Bits per byte of a model folder on raw text documents (the frozen gate sample).

Each model tokenizes the text itself (its own ``tokenizer.json``), so the figure depends only on
the text and the model: models with different tokenizers, trained on different data versions,
compare on the same bytes. The documents are scored as one stream, ``<|endoftext|>`` before each
(the separator StarFlow's training documents end with), in windows of ``window_tokens`` that
overlap by one token, so every content token is predicted exactly once with up to
``window_tokens - 1`` tokens of context. Only content tokens count: the separators are context,
not text, so the nats are those of predicting the documents' bytes, divided by their UTF-8 length.

This is torch code in the data-side package because its inputs and figures belong to the gate's
evaluation data (``frozen_sample.py``); it imports torch and transformers only when called, and
nothing from ``models/`` (``models/perplexity.py`` scores the tokenize stage's token streams).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

SEPARATOR = "<|endoftext|>"


def tokenized_stream(model_dir: str | Path, documents: list[dict[str, str]]) -> tuple[list[int], list[bool], int]:
    """(token ids, whether each is a content token, content bytes) for the documents, separator first."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    sep = tok.token_to_id(SEPARATOR)
    if sep is None:
        raise ValueError(f"{model_dir}: the tokenizer has no {SEPARATOR} token to separate documents with")
    ids, content, n_bytes = [sep], [False], 0
    for doc in documents:
        piece = tok.encode(doc["content"], add_special_tokens=False).ids
        ids += [*piece, sep]
        content += [True] * len(piece) + [False]
        n_bytes += len(doc["content"].encode("utf-8"))
    return ids, content, n_bytes


def bits_per_byte(model_dir: str | Path, documents: list[dict[str, str]], window_tokens: int,
                  batch_size: int) -> dict[str, Any]:
    """The model's bits per byte on ``documents`` and the figures it came from."""
    import torch
    from transformers import AutoModelForCausalLM

    ids, content, n_bytes = tokenized_stream(model_dir, documents)
    if n_bytes == 0:
        raise ValueError("bits per byte of an empty sample")
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model.eval()
    window = min(window_tokens, int(getattr(model.config, "max_position_embeddings", window_tokens)))
    stride = window - 1
    starts = list(range(0, len(ids) - 1, stride))
    tokens = torch.tensor(ids, dtype=torch.int64)
    scored = torch.tensor(content, dtype=torch.bool)
    nats, predicted = 0.0, 0
    full = [s for s in starts if s + window <= len(ids)]
    groups = [full[i:i + batch_size] for i in range(0, len(full), batch_size)]
    groups += [[s] for s in starts if s + window > len(ids)]  # the shorter last window on its own
    with torch.no_grad():
        for group in groups:
            end = min(window, len(ids) - group[0])
            batch = torch.stack([tokens[s:s + end] for s in group])
            mask = torch.stack([scored[s + 1:s + end] for s in group])
            logits = model(input_ids=batch).logits[:, :-1].float()
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1),
                                                     reduction="none").reshape(mask.shape)
            nats += loss[mask].double().sum().item()
            predicted += int(mask.sum())
    return {"bits_per_byte": nats / math.log(2) / n_bytes, "nats": nats, "tokens": predicted, "bytes": n_bytes,
            "bytes_per_token": n_bytes / predicted if predicted else 0.0, "window_tokens": window}
