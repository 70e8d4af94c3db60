"""Tokenize stage logic: tokenizer, repository documents with FIM, packed shards, FIM eval set.

    prepare(curated_files, out_dir, PrepareConfig(...), work_dir)

Steps, top-down:
1. the tokenizer: trained on a sample of the curated code (or loaded from a path);
2. repositories split into train/validation **by repository**;
3. repositories encoded in parallel chunks (Ray tasks when Ray is up): each becomes one
   document in StarCoder2's repository-context layout with FIM applied (ray_tasks/tokenize/fim.py);
   chunk results are cached under ``work_dir`` so an interrupted stage resumes;
4. each split's documents packed into shards for both stage lengths (ray_tasks/tokenize/shards.py);
5. single-line infilling examples cut from validation files, for the evaluate stage.

Determinism: every random choice comes from a generator seeded by (seed, repository), so
the output does not depend on chunking, worker count or Ray.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from ray_tasks.tokenize.fim import FimCounts, document_parts
from ray_tasks.tokenize.split import split_repositories
from ray_tasks.tokenize.shards import FORMAT, write_split
from ray_tasks.tables import utf8_lengths
from ray_tasks.tokenize.tokenizer import SPECIAL_TOKENS, load_tokenizer, save_hf_tokenizer, train_bpe


@dataclass(frozen=True)
class PrepareConfig:
    vocab_size: int = 4096
    min_frequency: int = 2
    train_max_bytes: int = 20_000_000
    tokenizer_path: str | None = None
    seq_len: int = 256
    seq_len_stage2: int = 1024
    val_fraction: float = 0.1
    repo_metadata_prob: float = 0.5
    fim_rate: float = 0.5
    fim_fragment_rate: float = 0.5
    fim_spm_rate: float = 0.5
    shard_sequences: int = 65536
    fim_eval_examples: int = 200
    repos_per_task: int = 16
    seed: int = 0


def repo_rng(repo_name: str, seed: int, purpose: str = "doc") -> np.random.Generator:
    digest = hashlib.sha256(f"{purpose}:{seed}:{repo_name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


# --------------------------------------------------------------------------- documents
def repository_document(
    repo_name: str, files: list[tuple[str, str, str]], cfg: PrepareConfig, special: dict[str, int], counts: FimCounts
) -> tuple[list, list[str | None], bool]:
    """(parts, language of each part, has metadata) for one repository's files (path, content, language)."""
    rng = repo_rng(repo_name, cfg.seed)
    files = sorted(files)
    order = rng.permutation(len(files))
    with_meta = bool(rng.random() < cfg.repo_metadata_prob)
    texts = [f"{files[i][0]}\n{files[i][1]}" if with_meta else files[i][1] for i in order]
    langs = [files[i][2] for i in order]
    parts, owners = document_parts(
        repo_name if with_meta else None, texts, special, rng, cfg.fim_rate, cfg.fim_fragment_rate,
        cfg.fim_spm_rate, counts,
    )
    return parts, [langs[o] if o >= 0 else None for o in owners], with_meta


def encode_parts(tok, parts: list, part_langs: list[str | None]) -> tuple[np.ndarray, Counter]:
    """Token ids of a document; text parts encoded separately (no merge across FIM cuts)."""
    texts = [p for p in parts if isinstance(p, str)]
    encoded = iter(tok.encode_batch(texts, add_special_tokens=False)) if texts else iter(())
    ids: list[int] = []
    per_lang: Counter = Counter()
    for part, lang in zip(parts, part_langs):
        if isinstance(part, str):
            piece = next(encoded).ids
            ids.extend(piece)
            per_lang[lang or "metadata"] += len(piece)
        else:
            ids.append(part)
            per_lang["<special>"] += 1
    return np.asarray(ids, dtype=np.int64), per_lang


def encode_chunk(table: pa.Table, tokenizer_json: str, cfg: PrepareConfig) -> dict:
    """Encode the repositories of one chunk: a Ray task, or a plain call in tests."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer_json)
    special = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    counts = FimCounts()
    per_lang: Counter = Counter()
    repos, docs, metadata = [], [], 0
    for repo_name, files in _group(table):
        parts, langs, with_meta = repository_document(repo_name, files, cfg, special, counts)
        ids, lang_tokens = encode_parts(tok, parts, langs)
        repos.append(repo_name)
        docs.append(ids)
        per_lang.update(lang_tokens)
        metadata += with_meta
    return {"repos": repos, "docs": docs, "fim": asdict(counts), "lang_tokens": dict(per_lang), "metadata_docs": metadata}


def _group(table: pa.Table) -> Iterator[tuple[str, list[tuple[str, str, str]]]]:
    langs = table.column("language").to_pylist() if "language" in table.column_names else [None] * table.num_rows
    by_repo: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for repo, path, content, lang in zip(
        table.column("repo_name").to_pylist(), table.column("path").to_pylist(), table.column("content").to_pylist(), langs
    ):
        by_repo[repo].append((path, content, lang or "unknown"))
    for repo in sorted(by_repo):
        yield repo, by_repo[repo]


# --------------------------------------------------------------------------- tokenizer
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


def get_tokenizer(files: pa.Table, cfg: PrepareConfig, work: Path | None):
    """The given tokenizer, or one trained on the curated sample (cached in ``work``)."""
    if cfg.tokenizer_path:
        return load_tokenizer(cfg.tokenizer_path)
    key = _digest([cfg.vocab_size, cfg.min_frequency, cfg.train_max_bytes, cfg.seed,
                   *(files.column("sha256").to_pylist() if "sha256" in files.column_names else [])])
    cached = work / f"tokenizer-{key[:16]}.json" if work else None
    if cached and cached.exists():
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(cached))
    tok = train_bpe(tokenizer_corpus(files, cfg.train_max_bytes, cfg.seed), cfg.vocab_size, cfg.min_frequency)
    if cached:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tok.save(str(cached))
    return tok


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


# --------------------------------------------------------------------------- the stage
def _repo_bytes(files: pa.Table) -> dict[str, int]:
    """UTF-8 bytes of content per repository (what the validation split's share is measured in)."""
    sizes = pa.table({"repo_name": files.column("repo_name"), "n": utf8_lengths(files.column("content"))})
    g = sizes.group_by("repo_name").aggregate([("n", "sum")])
    return dict(zip(g.column("repo_name").to_pylist(), g.column("n_sum").to_pylist()))


def prepare(files: pa.Table, out: Path, cfg: PrepareConfig, work: Path | None = None, use_ray: bool = False) -> dict:
    if files.num_rows == 0:
        raise ValueError("tokenize: the curated table is empty; nothing to train on")
    tok = get_tokenizer(files, cfg, work)
    save_hf_tokenizer(tok, out / "tokenizer", model_max_length=cfg.seq_len_stage2)
    vocab = tok.get_vocab_size()

    repos = sorted(set(files.column("repo_name").to_pylist()))
    train_repos, val_repos = split_repositories(repos, cfg.val_fraction, cfg.seed, _repo_bytes(files))
    if not val_repos:
        raise ValueError("tokenize: need at least 2 repositories to split train/validation by repository")

    t0 = time.perf_counter()
    results, cached = _encode_all(files, tok.to_str(), cfg, repos, work, use_ray)
    encode_s = time.perf_counter() - t0
    docs = {r: d for res in results for r, d in zip(res["repos"], res["docs"])}
    encoded_tokens = sum(len(d) for i, res in enumerate(results) if i not in cached for d in res["docs"])

    manifest: dict = {
        "format": FORMAT, "vocab_size": vocab, "special_tokens": len(SPECIAL_TOKENS),
        "seq_len": {"stage1": cfg.seq_len, "stage2": cfg.seq_len_stage2}, "splits": {},
    }
    for split, names in (("train", train_repos), ("val", val_repos)):
        entry = write_split(out, split, [docs[r] for r in names], vocab, manifest["seq_len"], cfg.shard_sequences)
        if entry["shards"]["stage1"] == []:
            raise ValueError(f"tokenize: the {split} split has fewer than seq_len={cfg.seq_len} tokens")
        entry["repositories"] = len(names)
        manifest["splits"][split] = entry
    manifest["dtype"] = str(np.load(out / "train.tokens.npy", mmap_mode="r").dtype)

    fim = FimCounts()
    lang_tokens: Counter = Counter()
    for res in results:
        fim.add(FimCounts(**res["fim"]))
        lang_tokens.update(res["lang_tokens"])
    metadata_docs = sum(res["metadata_docs"] for res in results)
    total_tokens = sum(len(d) for d in docs.values())
    manifest["fim"] = {**asdict(fim), "fim_document_rate": fim.fim_documents / max(fim.documents, 1),
                       "fim_fragment_rate_in_candidates": fim.fim_fragments / max(fim.candidate_fragments, 1),
                       "spm_rate": fim.spm_fragments / max(fim.fim_fragments, 1)}
    manifest["metadata_document_rate"] = metadata_docs / max(fim.documents, 1)
    manifest["tokens_per_language"] = dict(lang_tokens.most_common())
    manifest["val_bytes_per_token"] = _bytes_per_token(tok, files, val_repos)
    # Throughput over the chunks encoded in this run (cached chunks from an interrupted run excluded).
    manifest["encode_tokens_per_second"] = encoded_tokens / encode_s if encoded_tokens and encode_s > 0 else None
    manifest["chunks"] = {"total": len(results), "from_cache": len(cached)}
    manifest["total_tokens"] = total_tokens
    manifest["config"] = asdict(cfg)

    fim_examples = fim_eval_set(files, val_repos, cfg.fim_eval_examples, cfg.seed)
    with (out / "fim_eval.jsonl").open("w") as fh:
        for ex in fim_examples:
            fh.write(json.dumps(ex, sort_keys=True) + "\n")
    manifest["fim_eval_examples"] = len(fim_examples)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    (out / "split.json").write_text(json.dumps({"train": train_repos, "val": val_repos}, indent=2))
    return _summary(manifest)


def _encode_all(files: pa.Table, tok_json: str, cfg: PrepareConfig, repos: list[str], work: Path | None,
                use_ray: bool) -> tuple[list[dict], set[int]]:
    """Encode repositories in chunks of ``repos_per_task``; cached chunks are loaded, not recomputed."""
    import pyarrow.compute as pc

    chunks = [repos[i: i + cfg.repos_per_task] for i in range(0, len(repos), cfg.repos_per_task)]
    tables = [files.filter(pc.is_in(files.column("repo_name"), pa.array(c))) for c in chunks]
    keys = [_digest([tok_json, asdict(cfg), *_chunk_identity(t)]) for t in tables]
    cache = (work / "chunks") if work else None
    results: list[dict | None] = [_load_chunk(cache / f"{k}.npz") if cache else None for k in keys]
    todo = [i for i, r in enumerate(results) if r is None]
    cached = set(range(len(results))) - set(todo)
    if use_ray and todo:
        import ray

        remote = ray.remote(encode_chunk)
        tok_ref = ray.put(tok_json)
        refs = {i: remote.remote(tables[i], tok_ref, cfg) for i in todo}
        computed = {i: ray.get(ref) for i, ref in refs.items()}
    else:
        computed = {i: encode_chunk(tables[i], tok_json, cfg) for i in todo}
    for i, res in computed.items():
        results[i] = res
        if cache:
            _save_chunk(cache / f"{keys[i]}.npz", res)
    return results, cached  # type: ignore[return-value]


def _chunk_identity(table: pa.Table) -> list[str]:
    if "sha256" in table.column_names:
        return [f"{r}/{p}/{s}" for r, p, s in zip(table.column("repo_name").to_pylist(), table.column("path").to_pylist(),
                                                    table.column("sha256").to_pylist())]
    return [hashlib.sha256(c.encode()).hexdigest() for c in table.column("content").to_pylist()]


def _save_chunk(path: Path, res: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {k: v for k, v in res.items() if k != "docs"}
    buf = io.BytesIO()
    np.savez(buf, lengths=np.array([len(d) for d in res["docs"]], dtype=np.int64),
             tokens=np.concatenate(res["docs"]) if res["docs"] else np.zeros(0, np.int64),
             meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)


def _load_chunk(path: Path) -> dict | None:
    if not path.exists():
        return None
    with np.load(path) as z:
        meta = json.loads(z["meta"].tobytes().decode())
        bounds = np.cumsum(z["lengths"])[:-1]
        meta["docs"] = list(np.split(z["tokens"], bounds)) if len(z["lengths"]) else []
    return meta


def _bytes_per_token(tok, files: pa.Table, val_repos: list[str]) -> float:
    import pyarrow.compute as pc

    val = files.filter(pc.is_in(files.column("repo_name"), pa.array(val_repos)))
    texts = val.column("content").to_pylist()
    n_tokens = sum(len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False))
    return sum(len(t.encode()) for t in texts) / max(n_tokens, 1)


def _digest(items: list) -> str:
    return hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()


def _summary(manifest: dict) -> dict:
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
    s["encode_tokens_per_second"] = manifest["encode_tokens_per_second"]
    s["chunks_from_cache"] = manifest["chunks"]["from_cache"]
    s["tokens_per_language"] = dict(list(manifest["tokens_per_language"].items())[:15])
    s["fim_eval_examples"] = manifest["fim_eval_examples"]
    s["special_tokens"] = manifest["special_tokens"]
    return s
