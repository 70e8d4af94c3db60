"""Continued training: what a model trained on, whether a parent fits the data, the new/old mix.

A trained model carries its **training-data record** (``training_data.json`` in the HF export,
so it travels into the registered model): the tokenizer's digest and, per stage length, the
identity of every training shard of the data version it was trained on. Continuing from it
(``train.init_from``, resolved to a local folder by ``flows/train.py``; this module knows no
registry):

* the parent must fit: the data's tokenizer is the parent's (same digest), the vocabulary and
  every weight-bearing shape field are the same (``check_compatible``; a new tokenizer means
  training from scratch);
* the data's training shards are split by identity into **new** (not in the parent's record)
  and **old** (in it): ``data_mix``, which ``models/data.py: mixed_batch`` draws from with
  ``train.continued.replay_fraction`` of every batch from old shards.

Shard identity (the contract with the tokenize stage, ``manifest.json``): a shard entry's
``sha256`` when the manifest gives one, else the SHA-256 of the shard file's bytes, so that
nothing in the tokenize stage has to change. An entry's optional ``generation`` (its data
version) is copied into the record. Identity is by content: a shard whose rows moved (the
stream re-cut) is new, which is the safe reading (it is trained on, not skipped).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from models.params import ModelShape
from models.run import DataMix

RECORD_FILE = "training_data.json"
"""The training-data record's file name, in a model's HF export folder."""
RECORD_FORMAT = "starflow-training-data/1"
WEIGHT_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                 "intermediate_size", "tie_word_embeddings")
"""The shape fields the weights depend on. RoPE theta, the context length and the sliding window
are not in the weights, so a continued stage 1 may use stage 1's values on a parent that last
trained at stage 2's (stage 2 then adapts it again)."""


class IncompatibleParent(ValueError):
    """The parent model cannot continue on this data or with this shape (the message says why)."""


def tokenizer_digest(tokenizer_json: str | Path) -> str:
    """SHA-256 of a tokenizer.json's content, independent of its formatting (keys sorted, no
    whitespace): the same vocabulary, merges and special tokens give the same digest."""
    content = json.loads(Path(tokenizer_json).read_text())
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def shard_entries(shards_dir: str | Path, stage: str) -> list[dict[str, Any]]:
    """The training shards of one stage length: ``file, id, sequences`` (and ``generation``)."""
    shards_dir = Path(shards_dir)
    manifest = json.loads((shards_dir / "manifest.json").read_text())
    out = []
    for entry in manifest["splits"]["train"]["shards"].get(stage, []):
        path = shards_dir / entry["file"]
        ident = entry.get("sha256") or _file_sha256(str(path), *_stat(path))
        row = {"file": entry["file"], "id": ident, "sequences": int(entry["sequences"])}
        if "generation" in entry:
            row["generation"] = entry["generation"]
        out.append(row)
    return out


def training_record(shards_dir: str | Path, data_version: str | None, **extra: Any) -> dict[str, Any]:
    """What a model trained on ``shards_dir`` saw: every training shard of every stage length
    (``extra``: who trained it and from what, added by the flow)."""
    shards_dir = Path(shards_dir)
    manifest = json.loads((shards_dir / "manifest.json").read_text())
    tok = shards_dir / "tokenizer" / "tokenizer.json"
    return {
        "format": RECORD_FORMAT,
        "data_version": data_version,
        "tokenizer_sha256": tokenizer_digest(tok) if tok.exists() else None,
        "vocab_size": int(manifest["vocab_size"]),
        "shards": {stage: shard_entries(shards_dir, stage) for stage in manifest["seq_len"]},
        **extra,
    }


def read_record(model_dir: str | Path) -> dict[str, Any] | None:
    """A model's training-data record, or None for a model trained before records existed."""
    path = Path(model_dir) / RECORD_FILE
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    if record.get("format") != RECORD_FORMAT:
        raise ValueError(f"{path}: format {record.get('format')!r}, expected {RECORD_FORMAT!r}")
    return record


def check_compatible(parent_dir: str | Path, shards_dir: str | Path, shape: ModelShape, label: str) -> None:
    """Raise ``IncompatibleParent`` unless the parent (``label`` names it in messages) has the data's
    tokenizer and vocabulary and ``shape``'s weight-bearing fields."""
    parent_dir, shards_dir = Path(parent_dir), Path(shards_dir)
    ours, theirs = shards_dir / "tokenizer" / "tokenizer.json", parent_dir / "tokenizer.json"
    for path, whose in ((ours, "the data"), (theirs, label)):
        if not path.exists():
            raise IncompatibleParent(f"continuing from {label}: {whose} has no tokenizer.json ({path}) to compare")
    if (a := tokenizer_digest(ours)) != (b := tokenizer_digest(theirs)):
        raise IncompatibleParent(
            f"continuing from {label}: the data's tokenizer ({ours}, sha256 {a[:12]}) is not the parent model's "
            f"(sha256 {b[:12]}). A model is tied to its tokenizer: a new tokenizer means training from scratch "
            f"(train.init_from: scratch); to continue, tokenize with the parent's tokenizer "
            f"(tokenize.tokenizer_path).")
    config = json.loads((parent_dir / "config.json").read_text())
    vocab = int(json.loads((shards_dir / "manifest.json").read_text())["vocab_size"])
    diffs = [f"{k}: parent {config.get(k)!r}, this run {getattr(shape, k)!r}" for k in WEIGHT_FIELDS
             if config.get(k) != getattr(shape, k)]
    if config.get("vocab_size") != vocab:
        diffs.append(f"vocab_size: parent {config.get('vocab_size')!r}, the data {vocab!r}")
    if diffs:
        raise IncompatibleParent(f"continuing from {label}: its shape is not this run's ({'; '.join(diffs)}). "
                                 f"Set train.model to the parent's shape, or train from scratch "
                                 f"(train.init_from: scratch).")


def data_mix(shards_dir: str | Path, stage: str, parent_record: dict[str, Any] | None,
             replay_fraction: float) -> DataMix:
    """One stage length's mix: old shards are those the parent's record holds (by identity), new
    the rest. Without a record (a parent trained before records existed) every shard is new."""
    seen = {e["id"] for e in (parent_record or {}).get("shards", {}).get(stage, [])}
    entries = shard_entries(shards_dir, stage)
    return DataMix(new=[e["file"] for e in entries if e["id"] not in seen],
                   old=[e["file"] for e in entries if e["id"] in seen], replay_fraction=replay_fraction)


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


@lru_cache(maxsize=4096)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """A shard file's content hash (streamed: bounded memory); cached by path, size and mtime
    because one training run asks for the same shards' identities more than once."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
