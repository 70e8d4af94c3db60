"""Tiny real models for the gate's tests: a BPE tokenizer and a 2-layer Starcoder2 trained a few steps.

Text is Python source of the standard library: training files and held-out files are different
modules, so "trained longer on the same data" is measurably better on held-out code, as in the
real pipeline. A checkpoint is an HF folder (``save_pretrained`` + tokenizer files), what the
train stage exports.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

STDLIB = Path(json.__file__).parent.parent
TRAIN_MODULES = ["json/decoder.py", "json/encoder.py", "textwrap.py", "shlex.py", "fnmatch.py"]
HELD_OUT_MODULES = ["json/scanner.py", "glob.py", "colorsys.py", "bisect.py", "keyword.py"]
SEQ = 64


def texts(modules: list[str]) -> list[str]:
    return [(STDLIB / m).read_text() for m in modules]


def make_tokenizer(out: Path) -> Path:
    from ray_tasks.tokenize.tokenizer import save_hf_tokenizer, train_bpe

    tok = train_bpe(texts(TRAIN_MODULES), 320, 2)
    save_hf_tokenizer(tok, out, SEQ * 4)
    return out


class TinyTrainer:
    """A tiny Starcoder2 on the training modules; ``train(steps)`` continues where it left off."""

    def __init__(self, tokenizer_dir: Path, seed: int = 0):
        import torch
        from tokenizers import Tokenizer
        from transformers import Starcoder2Config, Starcoder2ForCausalLM

        torch.manual_seed(seed)
        self.tokenizer_dir = tokenizer_dir
        tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
        ids = [i for t in texts(TRAIN_MODULES) for i in [0, *tok.encode(t).ids]]
        n = len(ids) // SEQ
        self.data = torch.tensor(ids[: n * SEQ]).reshape(n, SEQ)
        config = Starcoder2Config(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64,
                                  num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                  max_position_embeddings=SEQ * 4, sliding_window=None, bos_token_id=0,
                                  eos_token_id=0)
        self.model = Starcoder2ForCausalLM(config)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-2)
        self.gen = torch.Generator().manual_seed(seed)

    def train(self, steps: int) -> TinyTrainer:
        import torch

        self.model.train()
        for _ in range(steps):
            batch = self.data[torch.randint(len(self.data), (8,), generator=self.gen)]
            loss = self.model(input_ids=batch, labels=batch).loss
            loss.backward()
            self.opt.step()
            self.opt.zero_grad()
        self.model.eval()
        return self

    def export(self, out: Path) -> Path:
        """The HF folder the train stage would write."""
        self.model.save_pretrained(out, safe_serialization=True)
        for f in self.tokenizer_dir.iterdir():
            shutil.copy2(f, out / f.name)
        return out


def write_files_table(path: Path, repos: dict[str, list[str]]) -> Path:
    """A curated-files table (``repo_name, path, content, length_bytes``): repository -> stdlib modules."""
    rows = [(repo, m, (STDLIB / m).read_text()) for repo, modules in repos.items() for m in modules]
    table = pa.table({"repo_name": [r[0] for r in rows], "path": [r[1] for r in rows],
                      "content": [r[2] for r in rows],
                      "length_bytes": [len(r[2].encode()) for r in rows]})
    pq.write_table(table, path, row_group_size=2)
    return path
