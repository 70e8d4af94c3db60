"""Stage ``tokenize``: a BPE tokenizer, repository documents with FIM, packed shards for both training stages.

Input: ``data/curate/files/``, a partitioned dataset (``ray_tasks/datasets.py``; a Parquet file
or a table in memory is one part), one row per file (``ray_tasks.tables.FILE_COLUMNS``), each
part holding whole repositories (a repository in two parts is an error naming it). It is read a
part at a time, in a few passes (``inputs.py``): memory holds one part, the chunks in flight,
the tokenizer's sample (``train_max_bytes``) and a few figures per repository.
Uses ``repo_name, path, content``, ``sha256`` (the file's identity for the tokenizer sample
and the work-dir cache; else ``content`` is hashed) and ``language`` (per-language token
counts; ``unknown`` without it).

Outputs in ``data/tokenize/`` (the shard layout is described in ``shards.py``; ``models/data.py``
reads it by that description):

* ``manifest.json``: format, vocab, dtype, stage lengths, per split its counts, stream hash and
  shard index, FIM and metadata rates, tokens per language, the params used. Only figures
  that follow from the inputs and params: the folder is byte-identical between runs.
* ``{split}.tokens.npy``, ``{split}.docs.npy``, ``{split}.{stage1,stage2}.{k:05d}.npy`` for
  ``split`` in ``train, val``: the token stream, document offsets, windowed shards.
* ``split.json``: ``{"train": [repo_name, ...], "val": [...]}``; the split is by repository.
* ``tokenizer/``: the tokenizer as HF files (``AutoTokenizer.from_pretrained``), with
  StarCoder2's 38 special tokens at ids 0..37 (``tokenizer.py``).
* ``fim_eval.jsonl``: single-line infilling examples from validation files, for the evaluate
  stage: ``task_id, repo_name, path, language, prefix, middle, suffix``.

Params: ``params.yaml: tokenize``, ``TokenizeParams`` in ``params.py``; where the encoding runs
is ``params.yaml: ray`` (``ray_tasks/executor.py``), with identical outputs either way.

Metrics (``metrics/tokenize.json``): ``vocab_size, seq_len, seq_len_stage2, dtype, special_tokens``,
per split ``{split}_repositories, {split}_documents, {split}_tokens, {split}_sequences,
{split}_sequences_stage2``, ``fim`` (``fim_document_rate, spm_rate, fim_fragments, fragments``),
``metadata_document_rate, val_bytes_per_token, tokens_per_language`` (top 15),
``fim_eval_examples``, and of this run only: ``encode_tokens_per_second, chunks_from_cache``.

Entry: ``stage.prepare`` (its steps: ``scan.py`` for the sizes and the tokenizer's sample,
``tokenizer.py`` for BPE, ``split.py`` for the split, ``documents.py`` and ``fim.py`` for the
documents, ``cache.py`` for the encoded chunks the splits are written from and resumed from,
``shards.py`` for the output, streamed); the flow is ``flows/tokenize.py``.
"""
