"""Tokenize stage: tokenizer, repository documents, FIM layout and rates, shards, determinism."""

import inspect
import json

import numpy as np
import pyarrow as pa
import pytest

import ray_tasks.tokenize.documents as documents
from ray_tasks.tokenize.fim import FimCounts, FimIds, fim_parts
from ray_tasks.tokenize.split import split_repositories
from ray_tasks.tokenize.documents import encode_parts, repository_document
from ray_tasks.tokenize.params import TokenizeParams
from ray_tasks.tokenize.stage import prepare
from ray_tasks.tokenize.tokenizer import SPECIAL_TOKENS, load_tokenizer, train_bpe

SPECIAL = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
PRE, MID, SUF, SEP, EOT, REPO = (SPECIAL[t] for t in ("<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<file_sep>", "<|endoftext|>", "<repo_name>"))


def _real_sources() -> list[str]:
    import email.message
    import json as json_mod

    import idna.core
    import six

    return [inspect.getsource(m) for m in (six, idna.core, json_mod, email.message)]


@pytest.fixture(scope="module")
def tok():
    return train_bpe(_real_sources() * 2, vocab_size=1000, min_frequency=2)


def test_special_tokens_take_ids_in_starcoder2_order(tok):
    assert len(SPECIAL_TOKENS) == 38 and SPECIAL_TOKENS[-4:] == ["<NAME>", "<EMAIL>", "<KEY>", "<PASSWORD>"]
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(38))
    ids = tok.encode("<file_sep>x = 12345").ids
    assert ids[0] == SEP and [tok.id_to_token(i) for i in ids[-5:]] == list("12345")  # digits split


def test_decode_encode_roundtrip_on_real_files(tok, tmp_path):
    from transformers import AutoTokenizer

    from ray_tasks.tokenize.tokenizer import save_hf_tokenizer

    save_hf_tokenizer(tok, tmp_path, 1024)
    hf = AutoTokenizer.from_pretrained(tmp_path)
    for text in _real_sources() + ["émoji 🚀 ünïcode\ttabs\r\nCRLF  trailing  "]:
        assert tok.decode(tok.encode(text).ids, skip_special_tokens=False) == text
        assert hf.decode(hf.encode(text, add_special_tokens=False)) == text


def test_psm_and_spm_layouts_token_for_token(tok):
    ids = FimIds(PRE, MID, SUF)
    text = "path.py\ndef f(a):\n    return a\n"
    cut = (10, 20)
    p, m, s = text[:10], text[10:20], text[20:]
    enc = lambda x: tok.encode(x).ids  # noqa: E731
    psm, _ = encode_parts(tok, fim_parts(text, cut, False, ids), [None] * 6)
    spm, _ = encode_parts(tok, fim_parts(text, cut, True, ids), [None] * 6)
    assert psm.tolist() == [PRE, *enc(p), SUF, *enc(s), MID, *enc(m)]
    assert spm.tolist() == [PRE, SUF, *enc(s), MID, *enc(p), *enc(m)]


def test_document_layouts(tok):
    files = [("a.py", "A = 1\n", "Python"), ("b.py", "B = 2\n", "Python")]
    counts = FimCounts()
    meta = TokenizeParams(repo_metadata_prob=1.0, fim_rate=0.0)
    parts, langs, with_meta = repository_document("org/r", files, meta, SPECIAL, counts)
    ids, per_lang = encode_parts(tok, parts, langs)
    text = tok.decode(ids.tolist(), skip_special_tokens=False)
    assert with_meta and text.startswith("<repo_name>org/r<file_sep>") and text.endswith("<|endoftext|>")
    assert "<file_sep>a.py\nA = 1\n" in text and "<file_sep>b.py\nB = 2\n" in text
    bare, _, _ = repository_document("org/r", files, TokenizeParams(repo_metadata_prob=0.0, fim_rate=0.0), SPECIAL, counts)
    assert bare[0] == SEP and "a.py\nA = 1\n" not in bare and bare[-1] == EOT
    assert per_lang["Python"] > 0 and per_lang["metadata"] > 0
    # Every file of a FIM'd document: <file_sep><fim_prefix>...; metadata is never transformed.
    fim_all = TokenizeParams(repo_metadata_prob=1.0, fim_rate=1.0, fim_fragment_rate=1.0, fim_spm_rate=0.0)
    parts, _, _ = repository_document("org/r", files, fim_all, SPECIAL, counts)
    assert parts[:2] == [REPO, "org/r"] and parts.count(PRE) == 2
    assert all(parts[i + 1] == PRE for i, p in enumerate(parts) if p == SEP)


def test_measured_rates_match_params_over_10k_documents():
    cfg = TokenizeParams(repo_metadata_prob=0.5, fim_rate=0.5, fim_fragment_rate=0.5, fim_spm_rate=0.5)
    counts, with_meta = FimCounts(), 0
    files = [(f"f{i}.py", f"x{i} = {i}\n", "Python") for i in range(4)]
    for r in range(10_000):
        _, _, meta = repository_document(f"repo{r}", files, cfg, SPECIAL, counts)
        with_meta += meta
    assert abs(with_meta / 10_000 - 0.5) < 0.02
    assert abs(counts.fim_documents / counts.documents - 0.5) < 0.02
    assert abs(counts.fim_fragments / counts.candidate_fragments - 0.5) < 0.02
    assert abs(counts.spm_fragments / counts.fim_fragments - 0.5) < 0.02


def test_split_is_by_repository_and_never_empty():
    train, val = split_repositories([f"r{i}" for i in range(20)], 0.1, 0)
    assert len(val) == 2 and not set(train) & set(val) and len(train) + len(val) == 20
    assert split_repositories(["a", "b"], 0.01, 0)[1]


def test_split_takes_a_share_of_the_bytes_when_sizes_are_known():
    """A few big repositories hold most of the code: validation gets ~10% of the bytes, not of the names."""
    sizes = {f"big{i}": 1_000_000 for i in range(3)} | {f"small{i}": 1_000 for i in range(30)}
    train, val = split_repositories(list(sizes), 0.1, 0, sizes)
    assert not set(train) & set(val) and len(train) + len(val) == 33
    assert sum(sizes[r] for r in val) <= 0.1 * sum(sizes.values())
    # The big ones overshoot the budget; the small ones all fit (bar the one kept last for train).
    assert not any(r.startswith("big") for r in val) and len(val) >= 29
    # One repository too big for the budget still gives a validation split; train keeps at least one.
    train, val = split_repositories(["a", "b"], 0.1, 0, {"a": 10, "b": 10})
    assert len(train) == 1 and len(val) == 1


def _corpus(n_repos=8):
    rows = []
    for r in range(n_repos):
        for f in range(3):
            body = "\n".join(f"def fn_{r}_{f}_{k}(x):\n    return x * {k} + {r}" for k in range(12))
            rows.append({"repo_name": f"org/repo{r}", "path": f"pkg/m{f}.py", "content": body + "\n",
                         "language": "Python", "sha256": f"{r}-{f}"})
    return pa.Table.from_pylist(rows)


def _dataset(table, root, n_parts):
    """``table`` (rows grouped by repository) as a dataset of ``n_parts`` parts of whole repositories."""
    from tests.ray_tasks.curate.test_parts import write_dataset

    return write_dataset(table, root, n_parts)


CFG = TokenizeParams(vocab_size=400, min_frequency=1, seq_len=32, seq_len_stage2=64, val_fraction=0.25,
                    repos_per_task=3, fim_eval_examples=5, shard_sequences=50)


def _output_bytes(d):
    """Every output file's bytes, the tokenizer folder included (DVC hashes them all)."""
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_prepare_outputs_determinism_and_split(tmp_path, ray_session):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for d in (a, b, c):
        d.mkdir()
    stats = prepare(_corpus(), a, CFG)
    prepare(_corpus(), b, CFG)
    prepare(_dataset(_corpus(), tmp_path / "in", 3), c, CFG, use_ray=True)
    # Same seed, with or without Ray, one part or three: every file, byte for byte.
    assert _output_bytes(a) == _output_bytes(b) == _output_bytes(c)

    manifest = json.loads((a / "manifest.json").read_text())
    split = json.loads((a / "split.json").read_text())
    assert manifest["config"] == CFG.model_dump()
    assert not {"encode_tokens_per_second", "chunks"} & set(manifest)  # figures of the run stay in the stats
    assert stats["chunks_from_cache"] == 0 and stats["encode_tokens_per_second"] > 0
    assert not set(split["train"]) & set(split["val"])
    assert manifest["splits"]["val"]["documents"] == len(split["val"]) == 2
    assert len(manifest["splits"]["train"]["shards"]["stage1"]) > 1  # shard_sequences=50 splits the train set
    train = np.concatenate([np.load(a / f["file"]) for f in manifest["splits"]["train"]["shards"]["stage1"]])
    stream = np.load(a / "train.tokens.npy")
    assert train.shape[1] == 32 and np.array_equal(train.reshape(-1), stream[: train.size])
    assert np.load(a / "train.stage2.00000.npy").shape[1] == 64
    assert stats["tokens_per_language"]["Python"] > 0 and stats["val_bytes_per_token"] > 1.0

    examples = [json.loads(line) for line in (a / "fim_eval.jsonl").read_text().splitlines()]
    contents = {(r["repo_name"], r["path"]): r["content"] for r in _corpus().to_pylist()}
    assert len(examples) == 5
    for ex in examples:
        assert ex["repo_name"] in split["val"]
        assert ex["prefix"] + ex["middle"] + ex["suffix"] == contents[(ex["repo_name"], ex["path"])]
        assert "\n" not in ex["middle"]


def test_resume_reuses_encoded_chunks_and_given_tokenizer(tmp_path, monkeypatch):
    work = tmp_path / "work"
    (tmp_path / "a").mkdir()
    prepare(_corpus(), tmp_path / "a", CFG, work)
    calls = []
    real = documents.encode_chunk
    monkeypatch.setattr(documents, "encode_chunk", lambda *a: calls.append(1) or real(*a))
    (tmp_path / "b").mkdir()
    stats = prepare(_corpus(), tmp_path / "b", CFG, work)
    assert calls == [] and stats["chunks_from_cache"] == 3  # every chunk came from the cache
    assert stats["encode_tokens_per_second"] is None  # nothing encoded in this run
    # Reused chunks and timings are stats of the run, not outputs: the folder is the same bytes.
    assert _output_bytes(tmp_path / "a") == _output_bytes(tmp_path / "b")

    given = CFG.model_copy(update={"tokenizer_path": str(tmp_path / "a" / "tokenizer")})
    (tmp_path / "c").mkdir()
    prepare(_corpus(), tmp_path / "c", given)
    shards = lambda d: {k: v for k, v in _output_bytes(d).items() if k.endswith(".npy")}  # noqa: E731
    assert shards(tmp_path / "a") == shards(tmp_path / "c")  # the manifest records the tokenizer_path
    with pytest.raises(ValueError, match="does not exist"):
        load_tokenizer(tmp_path / "nope")


def test_bad_inputs_are_clear_errors(tmp_path):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="seq_len_stage2 must be >= seq_len"):
        TokenizeParams(seq_len=64, seq_len_stage2=32)
    with pytest.raises(ValueError, match="empty"):
        prepare(_corpus().slice(0, 0), tmp_path, CFG)
    with pytest.raises(ValueError, match="at least 2 repositories"):
        prepare(_corpus(1), tmp_path, CFG)


def test_parts_stream_one_at_a_time_and_give_the_single_tables_bytes(tmp_path, monkeypatch):
    """Five parts: the same files as one table, no whole-dataset read, no table bigger than a part
    read at once, and the tokenizer sample cut where the sorted whole table cuts it."""
    import ray_tasks.datasets as datasets
    from ray_tasks.tokenize.inputs import Part

    cfg = CFG.model_copy(update={"train_max_bytes": 5000})  # the sample is a few of the files
    table = _corpus(10)
    (tmp_path / "one").mkdir()
    prepare(table, tmp_path / "one", cfg)
    src = _dataset(table, tmp_path / "in", 5)
    largest = max(p.rows for p in datasets.read_manifest(src).parts)
    reads = []
    real = Part.read
    monkeypatch.setattr(Part, "read", lambda self, cols=None: reads.append(r := real(self, cols)) or r)

    def whole(*a, **k):
        raise AssertionError("tokenize read a whole dataset")

    monkeypatch.setattr(datasets, "read_dataset", whole)
    monkeypatch.setattr("ray_tasks.tables.read_dataset", whole)
    (tmp_path / "five").mkdir()
    prepare(src, tmp_path / "five", cfg, tmp_path / "work")
    assert reads and max(t.num_rows for t in reads) == largest < table.num_rows
    assert _output_bytes(tmp_path / "one") == _output_bytes(tmp_path / "five")
    # Resumed: every chunk from the work dir, the same bytes again.
    (tmp_path / "again").mkdir()
    stats = prepare(src, tmp_path / "again", cfg, tmp_path / "work")
    assert stats["chunks_from_cache"] == len(list((tmp_path / "work" / "chunks").glob("*.json"))) >= 5
    assert _output_bytes(tmp_path / "one") == _output_bytes(tmp_path / "again")


def test_streamed_sample_is_the_sorted_prefix():
    """The heap keeps exactly the files the whole sorted table would give the tokenizer."""
    import hashlib

    from ray_tasks.tokenize.inputs import input_parts
    from ray_tasks.tokenize.scan import scan

    rng = np.random.default_rng(1)
    contents = ["x" * int(n) for n in rng.integers(0, 50, size=200)]
    table = pa.table({"repo_name": [f"r{i // 7}" for i in range(200)], "content": contents,
                      "sha256": [f"s{i % 150}" for i in range(200)]})  # repeated sha256: ties by row
    for max_bytes in (1, 49, 300, 2000, 10**6):
        keys = [hashlib.sha256(f"0:s{i % 150}".encode()).digest() for i in range(200)]
        expect, used = [], 0
        for i in sorted(range(200), key=keys.__getitem__):
            expect.append(i)
            used += len(contents[i])
            if used >= max_bytes:
                break
        parts = [p for k in range(0, 200, 35) for p in input_parts(table.slice(k, 35))]
        got = scan(parts, 0, max_bytes).sample
        assert [35 * p + i for _, _, p, i in got] == expect, max_bytes


def test_split_writer_writes_what_np_save_of_the_whole_arrays_writes(tmp_path):
    import hashlib

    from ray_tasks.tokenize.shards import write_split

    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 4000, size=int(rng.integers(0, 300))) for _ in range(17)]
    entry = write_split(tmp_path, "train", docs, 4096, {"stage1": 32, "stage2": 100}, 7)
    stream = np.concatenate(docs).astype(np.uint16)
    ref = tmp_path / "ref"
    ref.mkdir()
    np.save(ref / "train.tokens.npy", stream)
    np.save(ref / "train.docs.npy", np.concatenate([[0], np.cumsum([len(d) for d in docs])[:-1]]).astype(np.int64))
    for stage, n in (("stage1", 32), ("stage2", 100)):
        windows = stream[: stream.size // n * n].reshape(-1, n)
        for k, start in enumerate(range(0, len(windows), 7)):
            np.save(ref / f"train.{stage}.{k:05d}.npy", windows[start: start + 7])
        assert entry["tail_tokens_dropped"][stage] == stream.size % n
    assert entry["sha256"] == hashlib.sha256(stream.tobytes()).hexdigest()
    assert {p.name: p.read_bytes() for p in ref.iterdir()} == \
        {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}


def test_a_repository_split_across_parts_is_a_clear_error(tmp_path):
    import ray_tasks.datasets as datasets

    table = _corpus(3)
    infos = [datasets.write_part(tmp_path / "in", 0, table.slice(0, 4)), datasets.write_part(tmp_path / "in", 1, table.slice(4))]
    datasets.write_manifest(tmp_path / "in", infos, table.schema)
    with pytest.raises(ValueError, match="repository 'org/repo1' is in parts 0 and 1"):
        prepare(tmp_path / "in", tmp_path, CFG)


@pytest.mark.slow
def test_grown_input_encodes_only_its_new_parts(tmp_path):
    """Issue 16's shape for tokenize: with the tokenizer kept (``tokenizer_path``), a dataset grown
    by parts encodes only the new parts' chunks, and the output equals a full run on the union."""
    table = _corpus(10)
    (tmp_path / "tok").mkdir()
    prepare(table, tmp_path / "tok", CFG)
    cfg = CFG.model_copy(update={"tokenizer_path": str(tmp_path / "tok" / "tokenizer")})
    first = table.filter(pa.compute.is_in(table.column("repo_name"), pa.array([f"org/repo{r}" for r in range(6)])))
    work = tmp_path / "work"
    (tmp_path / "a").mkdir()
    prepare(_dataset(first, tmp_path / "first", 3), tmp_path / "a", cfg, work)
    n_first = len(list((work / "chunks").glob("*.json")))
    grown = _dataset(table, tmp_path / "grown", 5)  # the same first three parts, two more
    (tmp_path / "b").mkdir()
    stats = prepare(grown, tmp_path / "b", cfg, work)
    assert stats["chunks_from_cache"] == n_first and len(list((work / "chunks").glob("*.json"))) > n_first
    (tmp_path / "full").mkdir()
    prepare(grown, tmp_path / "full", cfg)
    assert _output_bytes(tmp_path / "b") == _output_bytes(tmp_path / "full")
