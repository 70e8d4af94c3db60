"""Tokenize stage logic: tokenizer, repository documents with FIM, packed shards, FIM eval set.

    stats = prepare("data/curate/files", out_dir, params.tokenize, work_dir, use_ray=use_ray)

Steps, top-down, each a pass over the input's parts, one part in memory at a time
(ray_tasks/tokenize/inputs.py; a table in memory is one part):
1. sizes per repository and the tokenizer's sample, drawn while streaming (ray_tasks/tokenize/scan.py);
2. the tokenizer: trained on that sample of the curated code (or loaded from a path);
3. repositories split into train/validation **by repository** (ray_tasks/tokenize/split.py);
4. repositories encoded in parallel chunks, part by part, each one document in StarCoder2's
   repository-context layout with FIM applied (ray_tasks/tokenize/documents.py), saved in the
   work dir (a temporary one without it);
5. each split's documents, in repository-name order, streamed from those chunks into shards for
   both stage lengths (ray_tasks/tokenize/shards.py), a document at a time;
6. the validation figures: bytes per token, and single-line infilling examples cut from
   validation files for the evaluate stage (only the examples that can still be chosen are kept).

Memory: one part, the chunks in flight, the tokenizer's sample (``train_max_bytes``), a few
figures per repository and ``fim_eval_examples`` examples; never the input or a split's tokens.

Determinism: every random choice comes from a generator seeded by (seed, repository), so
the output does not depend on chunking, parts, worker count, Ray or the work-dir cache; figures
that do (throughput, chunks reused) go to the returned stats, never into the output folder,
whose hash DVC records and the train stage's resume check reads.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ray_tasks.tokenize import kept
from ray_tasks.tokenize.cache import cache_key, chunk_tokens, prune_chunks
from ray_tasks.tokenize.documents import Chunk, encode_repositories, repo_rng
from ray_tasks.tokenize.fim import FimCounts
from ray_tasks.tokenize.inputs import Part, input_parts
from ray_tasks.tokenize.params import TokenizeParams
from ray_tasks.tokenize.scan import Scan, sample_texts, scan
from ray_tasks.tokenize.shards import FORMAT, SplitWriter, token_dtype
from ray_tasks.tokenize.split import split_repositories
from ray_tasks.tokenize.tokenizer import SPECIAL_TOKENS, load_tokenizer, save_hf_tokenizer, train_bpe

VAL_COLUMNS = ("repo_name", "path", "content", "language", "sha256")


def prepare(src: str | Path | pa.Table, out: Path, params: TokenizeParams, work: Path | None = None,
            use_ray: bool = False, kept_tokenizer: Path | None = None) -> dict:
    """Write the stage's outputs into ``out`` and return its stats (metrics/tokenize.json).
    ``src``: the curated dataset (a folder), a Parquet file, or a table. ``kept_tokenizer``: the
    folder of the tokenizer kept between runs (``kept.py``): used when it was trained with today's
    settings, else trained here and kept there."""
    parts = input_parts(src)
    reuse = kept.usable(kept_tokenizer, params)
    found = scan(parts, params.seed, None if params.tokenizer_path or reuse else params.train_max_bytes)
    if found.rows == 0:
        raise ValueError("tokenize: the curated table is empty; nothing to train on")
    if reuse:
        tok = kept.load(kept_tokenizer)
    else:
        tok = get_tokenizer(parts, found, params, work)
        if kept_tokenizer is not None and not params.tokenizer_path:
            kept.save(kept_tokenizer, tok, params)
    save_hf_tokenizer(tok, out / "tokenizer", model_max_length=params.seq_len_stage2)
    vocab = tok.get_vocab_size()

    repos = sorted(found.repo_bytes)
    train_repos, val_repos = split_repositories(repos, params.val_fraction, params.seed, found.repo_bytes)
    if not val_repos:
        raise ValueError("tokenize: need at least 2 repositories to split train/validation by repository")

    with _chunk_folder(work) as folder:
        t0 = time.perf_counter()
        chunks = encode_repositories(parts, found.repo_part, tok.to_str(), params, folder, use_ray, token_dtype(vocab))
        encode_s = time.perf_counter() - t0
        encoded_tokens = sum(sum(c.meta["lengths"]) for c in chunks if not c.cached)

        manifest: dict = {
            "format": FORMAT, "vocab_size": vocab, "special_tokens": len(SPECIAL_TOKENS),
            "seq_len": {"stage1": params.seq_len, "stage2": params.seq_len_stage2}, "splits": {},
        }
        for split, names in (("train", train_repos), ("val", val_repos)):
            entry = write_split_from_chunks(out, split, names, chunks, folder, vocab, manifest["seq_len"],
                                            params.shard_sequences)
            if entry["shards"]["stage1"] == []:
                raise ValueError(f"tokenize: the {split} split has fewer than seq_len={params.seq_len} tokens")
            entry["repositories"] = len(names)
            manifest["splits"][split] = entry
        if work is not None:
            prune_chunks(folder, {c.key for c in chunks})
    manifest["dtype"] = str(token_dtype(vocab))

    fim = FimCounts()
    lang_tokens: Counter = Counter()
    for c in chunks:
        fim.add(FimCounts(**c.meta["fim"]))
        lang_tokens.update(c.meta["lang_tokens"])
    metadata_docs = sum(c.meta["metadata_docs"] for c in chunks)
    manifest["fim"] = {**asdict(fim), "fim_document_rate": fim.fim_documents / max(fim.documents, 1),
                       "fim_fragment_rate_in_candidates": fim.fim_fragments / max(fim.candidate_fragments, 1),
                       "spm_rate": fim.spm_fragments / max(fim.fim_fragments, 1)}
    manifest["metadata_document_rate"] = metadata_docs / max(fim.documents, 1)
    # Most tokens first; ties by name (the order must not depend on which chunk came first).
    manifest["tokens_per_language"] = dict(sorted(lang_tokens.items(), key=lambda kv: (-kv[1], kv[0])))
    manifest["total_tokens"] = sum(sum(c.meta["lengths"]) for c in chunks)
    manifest["config"] = params.model_dump()

    bytes_per_token, fim_examples = validation_figures(parts, found, val_repos, tok, params.fim_eval_examples,
                                                       params.seed)
    manifest["val_bytes_per_token"] = bytes_per_token
    with (out / "fim_eval.jsonl").open("w") as fh:
        for ex in fim_examples:
            fh.write(json.dumps(ex, sort_keys=True) + "\n")
    manifest["fim_eval_examples"] = len(fim_examples)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    (out / "split.json").write_text(json.dumps({"train": train_repos, "val": val_repos}, indent=2))
    # Throughput over the chunks encoded in this run (chunks cached by an interrupted run excluded).
    run = {"encode_tokens_per_second": encoded_tokens / encode_s if encoded_tokens and encode_s > 0 else None,
           "chunks_from_cache": sum(c.cached for c in chunks)}
    return {**_summary(manifest), **run}


def write_split_from_chunks(out: Path, split: str, names: list[str], chunks: list[Chunk], folder: Path, vocab: int,
                            seq_lens: dict[str, int], shard_sequences: int) -> dict:
    """One split's files from the saved chunks: documents in the order of ``names``, each sliced
    out of its chunk's memory-mapped tokens, so one document is in memory at a time."""
    where: dict[str, tuple[str, int, int]] = {}
    for c in chunks:
        offset = 0
        for repo, n in zip(c.meta["repos"], c.meta["lengths"]):
            where[repo] = (c.key, offset, n)
            offset += n
    writer = SplitWriter(out, split, [where[r][2] for r in names], vocab, seq_lens, shard_sequences)
    for repo in names:
        key, offset, n = where[repo]
        writer.write(chunk_tokens(folder, key)[offset: offset + n])
    return writer.close()


class _chunk_folder:
    """``work/chunks``, or a temporary folder removed afterwards when there is no work dir."""

    def __init__(self, work: Path | None):
        self.work, self.tmp = work, None

    def __enter__(self) -> Path:
        if self.work is None:
            self.tmp = tempfile.TemporaryDirectory(prefix="starflow-tokenize-")
            return Path(self.tmp.name)
        return Path(self.work) / "chunks"

    def __exit__(self, *exc) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()


# --------------------------------------------------------------------------- tokenizer
def get_tokenizer(parts: list[Part], found: Scan, params: TokenizeParams, work: Path | None):
    """The given tokenizer, or one trained on the curated sample (cached in ``work``)."""
    if params.tokenizer_path:
        return load_tokenizer(params.tokenizer_path)
    key = cache_key([params.vocab_size, params.min_frequency, params.train_max_bytes, params.seed, found.identity,
                     found.rows])
    cached = work / f"tokenizer-{key[:16]}.json" if work else None
    if cached and cached.exists():
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(cached))
    tok = train_bpe(sample_texts(parts, found), params.vocab_size, params.min_frequency)
    if cached:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tok.save(str(cached))
    return tok


# --------------------------------------------------------------------------- validation figures
def validation_figures(parts: list[Part], found: Scan, val_repos: list[str], tok, n: int,
                       seed: int) -> tuple[float, list[dict]]:
    """(bytes per token of the validation files, single-line FIM examples), part by part.

    The examples are SantaCoder-style: validation files in the order of a seeded hash of
    ``repo/path``, those with at least 3 lines of 4+ characters, the first ``n``; a heap keeps
    the ``n`` smallest keys seen, so memory holds ``n`` examples."""
    val = set(val_repos)
    holding = sorted({found.repo_part[r] for r in val})
    n_bytes = n_tokens = 0
    heap: list[tuple[bytes, int, dict]] = []  # (inverted key, -row, example): the largest key on top
    row = 0
    for p in holding:
        table = parts[p].read(VAL_COLUMNS)
        table = table.filter(pc.is_in(table.column("repo_name"), pa.array(sorted(val), table.schema.field("repo_name").type)))
        texts = table.column("content").to_pylist()
        n_tokens += sum(len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False))
        n_bytes += sum(len(t.encode()) for t in texts)
        for r in table.select([c for c in VAL_COLUMNS if c in table.column_names]).to_pylist():
            row += 1
            if n == 0:
                break
            key = hashlib.sha256(f"fim-eval:{seed}:{r['repo_name']}/{r['path']}".encode()).digest()
            if len(heap) == n and (key, row) > (_invert(heap[0][0]), -heap[0][1]):
                continue
            example = fim_example(r, seed)
            if example is None:
                continue
            item = (_invert(key), -row, example)
            if len(heap) < n:
                heapq.heappush(heap, item)
            else:
                heapq.heapreplace(heap, item)
        del table
    chosen = sorted(heap, key=lambda it: (_invert(it[0]), -it[1]))
    examples = [{"task_id": f"fim/{i}", **ex} for i, (_, _, ex) in enumerate(chosen)]
    return n_bytes / max(n_tokens, 1), examples


def fim_example(r: dict, seed: int) -> dict | None:
    """One file's single-line infilling example (a seeded line of 4+ characters), or None for a
    file with fewer than 3 such lines."""
    lines = r["content"].split("\n")
    candidates = [i for i, line in enumerate(lines) if len(line.strip()) >= 4]
    if len(candidates) < 3:
        return None
    i = candidates[int(repo_rng(f"{r['repo_name']}/{r['path']}", seed, "fim-line").integers(len(candidates)))]
    return {
        "repo_name": r["repo_name"], "path": r["path"], "language": r.get("language") or "unknown",
        "prefix": "".join(line + "\n" for line in lines[:i]), "middle": lines[i],
        "suffix": "".join("\n" + line for line in lines[i + 1:]),
    }


def _invert(key: bytes) -> bytes:
    return bytes(255 - b for b in key)


# --------------------------------------------------------------------------- figures
def _summary(manifest: dict) -> dict:
    """The manifest's headline figures, flat, for metrics/tokenize.json."""
    s = {"vocab_size": manifest["vocab_size"], "seq_len": manifest["seq_len"]["stage1"],
         "seq_len_stage2": manifest["seq_len"]["stage2"], "dtype": manifest["dtype"]}
    for split, e in manifest["splits"].items():
        s[f"{split}_repositories"] = e["repositories"]
        s[f"{split}_documents"] = e["documents"]
        s[f"{split}_tokens"] = e["tokens"]
        s[f"{split}_sequences"] = sum(f["sequences"] for f in e["shards"]["stage1"])
        s[f"{split}_sequences_stage2"] = sum(f["sequences"] for f in e["shards"]["stage2"])
    s["fim"] = {k: manifest["fim"][k] for k in ("fim_document_rate", "spm_rate", "fim_fragments", "fragments")}
    s["metadata_document_rate"] = manifest["metadata_document_rate"]
    s["val_bytes_per_token"] = manifest["val_bytes_per_token"]
    s["tokens_per_language"] = dict(list(manifest["tokens_per_language"].items())[:15])
    s["fim_eval_examples"] = manifest["fim_eval_examples"]
    s["special_tokens"] = manifest["special_tokens"]
    return s
