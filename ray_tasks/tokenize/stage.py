"""Tokenize stage logic: tokenizer, repository documents with FIM, packed shards, FIM eval set.

    stats = prepare(curated_files, out_dir, params.tokenize, work_dir, use_ray=use_ray)

Steps, top-down:
1. the tokenizer: trained on a sample of the curated code (or loaded from a path);
2. repositories split into train/validation **by repository** (ray_tasks/tokenize/split.py);
3. repositories encoded in parallel chunks, each one document in StarCoder2's
   repository-context layout with FIM applied (ray_tasks/tokenize/documents.py);
4. each split's documents packed into shards for both stage lengths (ray_tasks/tokenize/shards.py);
5. single-line infilling examples cut from validation files, for the evaluate stage.

Determinism: every random choice comes from a generator seeded by (seed, repository), so
the output does not depend on chunking, worker count, Ray or the work-dir cache; figures
that do (throughput, chunks reused) go to the returned stats, never into the output folder,
whose hash DVC records and the train stage's resume check reads.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ray_tasks.tables import utf8_lengths
from ray_tasks.tokenize.cache import cache_key
from ray_tasks.tokenize.documents import encode_repositories, repo_rng
from ray_tasks.tokenize.fim import FimCounts
from ray_tasks.tokenize.params import TokenizeParams
from ray_tasks.tokenize.shards import FORMAT, write_split
from ray_tasks.tokenize.split import split_repositories
from ray_tasks.tokenize.tokenizer import SPECIAL_TOKENS, load_tokenizer, save_hf_tokenizer, train_bpe


def prepare(files: pa.Table, out: Path, params: TokenizeParams, work: Path | None = None,
            use_ray: bool = False) -> dict:
    """Write the stage's outputs into ``out`` and return its stats (metrics/tokenize.json)."""
    if files.num_rows == 0:
        raise ValueError("tokenize: the curated table is empty; nothing to train on")
    tok = get_tokenizer(files, params, work)
    save_hf_tokenizer(tok, out / "tokenizer", model_max_length=params.seq_len_stage2)
    vocab = tok.get_vocab_size()

    repos = sorted(set(files.column("repo_name").to_pylist()))
    train_repos, val_repos = split_repositories(repos, params.val_fraction, params.seed, _repo_bytes(files))
    if not val_repos:
        raise ValueError("tokenize: need at least 2 repositories to split train/validation by repository")

    t0 = time.perf_counter()
    results, cached = encode_repositories(files, tok.to_str(), params, repos, work, use_ray)
    encode_s = time.perf_counter() - t0
    docs = {r: d for res in results for r, d in zip(res["repos"], res["docs"])}
    encoded_tokens = sum(len(d) for i, res in enumerate(results) if i not in cached for d in res["docs"])

    manifest: dict = {
        "format": FORMAT, "vocab_size": vocab, "special_tokens": len(SPECIAL_TOKENS),
        "seq_len": {"stage1": params.seq_len, "stage2": params.seq_len_stage2}, "splits": {},
    }
    for split, names in (("train", train_repos), ("val", val_repos)):
        entry = write_split(out, split, [docs[r] for r in names], vocab, manifest["seq_len"], params.shard_sequences)
        if entry["shards"]["stage1"] == []:
            raise ValueError(f"tokenize: the {split} split has fewer than seq_len={params.seq_len} tokens")
        entry["repositories"] = len(names)
        manifest["splits"][split] = entry
    manifest["dtype"] = str(np.load(out / "train.tokens.npy", mmap_mode="r").dtype)

    fim = FimCounts()
    lang_tokens: Counter = Counter()
    for res in results:
        fim.add(FimCounts(**res["fim"]))
        lang_tokens.update(res["lang_tokens"])
    metadata_docs = sum(res["metadata_docs"] for res in results)
    manifest["fim"] = {**asdict(fim), "fim_document_rate": fim.fim_documents / max(fim.documents, 1),
                       "fim_fragment_rate_in_candidates": fim.fim_fragments / max(fim.candidate_fragments, 1),
                       "spm_rate": fim.spm_fragments / max(fim.fim_fragments, 1)}
    manifest["metadata_document_rate"] = metadata_docs / max(fim.documents, 1)
    manifest["tokens_per_language"] = dict(lang_tokens.most_common())
    manifest["val_bytes_per_token"] = _bytes_per_token(tok, files, val_repos)
    manifest["total_tokens"] = sum(len(d) for d in docs.values())
    manifest["config"] = params.model_dump()

    fim_examples = fim_eval_set(files, val_repos, params.fim_eval_examples, params.seed)
    with (out / "fim_eval.jsonl").open("w") as fh:
        for ex in fim_examples:
            fh.write(json.dumps(ex, sort_keys=True) + "\n")
    manifest["fim_eval_examples"] = len(fim_examples)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    (out / "split.json").write_text(json.dumps({"train": train_repos, "val": val_repos}, indent=2))
    # Throughput over the chunks encoded in this run (chunks cached by an interrupted run excluded).
    run = {"encode_tokens_per_second": encoded_tokens / encode_s if encoded_tokens and encode_s > 0 else None,
           "chunks_from_cache": len(cached)}
    return {**_summary(manifest), **run}


# --------------------------------------------------------------------------- tokenizer
def get_tokenizer(files: pa.Table, params: TokenizeParams, work: Path | None):
    """The given tokenizer, or one trained on the curated sample (cached in ``work``)."""
    if params.tokenizer_path:
        return load_tokenizer(params.tokenizer_path)
    key = cache_key([params.vocab_size, params.min_frequency, params.train_max_bytes, params.seed,
                     *(files.column("sha256").to_pylist() if "sha256" in files.column_names else [])])
    cached = work / f"tokenizer-{key[:16]}.json" if work else None
    if cached and cached.exists():
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(cached))
    tok = train_bpe(tokenizer_corpus(files, params.train_max_bytes, params.seed), params.vocab_size,
                    params.min_frequency)
    if cached:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tok.save(str(cached))
    return tok


def tokenizer_corpus(files: pa.Table, max_bytes: int, seed: int) -> Iterator[str]:
    """A deterministic sample of file contents, about ``max_bytes`` in all."""
    keys = [hashlib.sha256(f"{seed}:{s}".encode()).digest() for s in files.column("sha256").to_pylist()] \
        if "sha256" in files.column_names else [hashlib.sha256(f"{seed}:{i}".encode()).digest() for i in range(files.num_rows)]
    content = files.column("content")
    used = 0
    for i in sorted(range(files.num_rows), key=keys.__getitem__):
        text = content[i].as_py()
        yield text
        used += len(text)
        if used >= max_bytes:
            return



# --------------------------------------------------------------------------- FIM eval set
def fim_eval_set(files: pa.Table, repos: list[str], n: int, seed: int) -> list[dict]:
    """Single-line infilling examples (SantaCoder style) from validation repositories' files."""
    keep = set(repos)
    rows = [r for r in files.select([c for c in ("repo_name", "path", "content", "language", "sha256")
                                     if c in files.column_names]).to_pylist() if r["repo_name"] in keep]
    rows.sort(key=lambda r: hashlib.sha256(f"fim-eval:{seed}:{r['repo_name']}/{r['path']}".encode()).digest())
    out = []
    for r in rows:
        lines = r["content"].split("\n")
        candidates = [i for i, line in enumerate(lines) if len(line.strip()) >= 4]
        if len(candidates) < 3:
            continue
        i = candidates[int(repo_rng(f"{r['repo_name']}/{r['path']}", seed, "fim-line").integers(len(candidates)))]
        out.append({
            "task_id": f"fim/{len(out)}", "repo_name": r["repo_name"], "path": r["path"],
            "language": r.get("language") or "unknown",
            "prefix": "".join(line + "\n" for line in lines[:i]), "middle": lines[i],
            "suffix": "".join("\n" + line for line in lines[i + 1:]),
        })
        if len(out) >= n:
            break
    return out


# --------------------------------------------------------------------------- figures
def _repo_bytes(files: pa.Table) -> dict[str, int]:
    """UTF-8 bytes of content per repository (what the validation split's share is measured in)."""
    sizes = pa.table({"repo_name": files.column("repo_name"), "n": utf8_lengths(files.column("content"))})
    g = sizes.group_by("repo_name").aggregate([("n", "sum")])
    return dict(zip(g.column("repo_name").to_pylist(), g.column("n_sum").to_pylist()))


def _bytes_per_token(tok, files: pa.Table, val_repos: list[str]) -> float:
    val = files.filter(pc.is_in(files.column("repo_name"), pa.array(val_repos)))
    texts = val.column("content").to_pylist()
    n_tokens = sum(len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False))
    return sum(len(t.encode()) for t in texts) / max(n_tokens, 1)


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
