"""The kept tokenizer: trained once, then kept as the data grows, so that a model can continue.

A model is tied to its tokenizer (``models/continuation.py`` refuses a parent whose tokenizer is
not the data's), and a tokenizer retrained on every grown corpus would make every scheduled
retraining start from scratch. So the tokenize stage keeps the tokenizer it trained in
``data/tokenizer/`` (a DVC ``persist`` output: not deleted before a run, versioned like any output)
with the settings that made it (``identity.json``), and later runs encode with it. A new tokenizer
is asked for by bumping ``tokenize.tokenizer_version`` (or changing the settings it was trained
with), and it means training from scratch (``train.init_from: scratch``): the stage says so.

A fresh clone (no ``data/tokenizer``) trains it on the data it has, exactly as a run without a
kept tokenizer does, so the default run's outputs do not depend on this module.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from ray_tasks.tokenize.params import TokenizeParams

log = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"
IDENTITY_FILE = "identity.json"


def identity(params: TokenizeParams) -> dict:
    """The settings a kept tokenizer was trained with; another value of any of them trains anew."""
    return {"version": params.tokenizer_version, "vocab_size": params.vocab_size,
            "min_frequency": params.min_frequency, "train_max_bytes": params.train_max_bytes, "seed": params.seed}


def usable(folder: Path | None, params: TokenizeParams) -> bool:
    """Whether ``folder`` holds a tokenizer kept with today's settings (and none is given by path)."""
    if folder is None or params.tokenizer_path:
        return False
    try:
        stored = json.loads((folder / IDENTITY_FILE).read_text())
    except (OSError, ValueError):
        return False
    if stored != identity(params):
        log.warning("tokenize: the kept tokenizer in %s was trained with %s, not %s: a new one is trained, and a "
                    "model continued from one trained on the old tokenizer is refused (train from scratch: "
                    "train.init_from: scratch)", folder, stored, identity(params))
        return False
    return (folder / TOKENIZER_FILE).is_file()


def load(folder: Path):
    from tokenizers import Tokenizer

    log.info("tokenize: encoding with the kept tokenizer of %s (bump tokenize.tokenizer_version for a new one)", folder)
    return Tokenizer.from_file(str(folder / TOKENIZER_FILE))


def save(folder: Path, tok, params: TokenizeParams) -> None:
    """Keep ``tok`` in ``folder`` with its identity, atomically (a temp folder renamed over it)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        tok.save(str(tmp / TOKENIZER_FILE))
        (tmp / IDENTITY_FILE).write_text(json.dumps(identity(params), indent=2, sort_keys=True) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
