import json

import numpy as np
import pyarrow as pa
import pytest

from ray_tasks.formatting import format_repository, split_repositories
from ray_tasks.packing import pack
from ray_tasks.prepare import prepare
from ray_tasks.tokenizer import SPECIAL_TOKENS, train_bpe


def test_special_tokens_take_ids_in_starcoder2_order():
    tok = train_bpe(["def f(x):\n    return x + 12345\n"] * 20, vocab_size=400, min_frequency=1)
    assert len(SPECIAL_TOKENS) == 38
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(38))
    # Digits are split one by one, and special tokens are single tokens.
    ids = tok.encode("<file_sep>x = 12345").ids
    assert ids[0] == SPECIAL_TOKENS.index("<file_sep>")
    assert [tok.id_to_token(i) for i in ids[-5:]] == list("12345")


def test_repository_format_with_and_without_metadata():
    files = [("a.py", "A"), ("b.py", "B")]
    with_meta = format_repository("org/r", files, metadata_prob=1.0, seed=0)
    assert with_meta.startswith("<repo_name>org/r<file_sep>") and with_meta.endswith("<|endoftext|>")
    assert "<file_sep>a.py\nA" in with_meta and "<file_sep>b.py\nB" in with_meta
    bare = format_repository("org/r", files, metadata_prob=0.0, seed=0)
    assert "a.py" not in bare and bare.count("<file_sep>") == 2
    assert format_repository("org/r", files, 0.5, 3) == format_repository("org/r", files, 0.5, 3)


def test_split_is_by_repository_and_never_empty():
    train, val = split_repositories([f"r{i}" for i in range(20)], 0.1, 0)
    assert len(val) == 2 and not set(train) & set(val)
    assert split_repositories(["a", "b"], 0.01, 0)[1]  # at least one validation repo


def test_pack_drops_only_the_tail():
    arr, dropped = pack([[1, 2, 3], [4, 5], [6, 7, 8, 9]], seq_len=4, vocab_size=100)
    assert arr.dtype == np.uint16 and arr.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]] and dropped == 1


def test_prepare_writes_shards_and_hf_tokenizer(tmp_path):
    from transformers import AutoTokenizer

    code = "def add(a, b):\n    return a + b\n" * 40
    files = pa.table({"repo_name": [f"r{i}" for i in range(4)], "path": ["m.py"] * 4, "content": [code] * 4})
    stats = prepare(files, tmp_path, vocab_size=300, min_frequency=1, train_max_bytes=10_000, seq_len=16,
                    val_fraction=0.25, repo_metadata_prob=0.5, seed=0)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["seq_len"] == 16 and stats["val_repositories"] == 1 and stats["train_repositories"] == 3
    train = np.load(tmp_path / "train.npy")
    assert train.shape[1] == 16 and train.max() < meta["vocab_size"]
    tok = AutoTokenizer.from_pretrained(tmp_path / "tokenizer")
    assert tok.eos_token == "<|endoftext|>" and tok.convert_tokens_to_ids("<fim_middle>") == 2
    with pytest.raises(ValueError, match="empty"):
        prepare(files.slice(0, 0), tmp_path, 300, 1, 1000, 16, 0.25, 0.5, 0)
