"""Stage ``dedup``: exact (repositories, files) then MinHash near-deduplication, the seed's order.

Input: ``data/ingest/files/`` (a partitioned dataset, ``ray_tasks/datasets.py``), one row per
file. Needs ``repo_name, path, content``; uses ``sha256`` (else hashes ``content``), ``length_bytes``, and the ranking columns when
present: ``license_type``, ``star_events_count`` / ``fork_events_count``, ``revision_date``,
``visit_date``. Every other column passes through. It is read by row group, never whole
(``source.py``): this process reads the small columns, map tasks read the content of their
row groups, so peak memory follows the input's row-group size, not the corpus.

Outputs in ``data/dedup/``:

* ``files/``: the kept rows, every input column, in input order, a partitioned dataset aligned
  with the input: part k holds the kept rows of input part k (each input row group gives at most
  one output row group; a part with none kept is empty), written by one task per part.
* ``rejected.parquet``: ``stage, reason, repo_name, path, length_bytes, sha256, detail``
  (``ray_tasks.tables.REJECTED_SCHEMA``); ``reason`` is ``exact_duplicate_repo``,
  ``exact_duplicate`` or ``near_duplicate``, ``detail`` names the kept copy.
* ``clusters.parquet``: ``cluster_id, repo_name, path, kept, reason, new``: every member of
  every cluster of more than one file that the run touched, by cluster, best copy first.
* ``index/``: the LSH index a later batch is deduplicated against (layout in ``index.py``;
  ``starflow dedup --index data/dedup/index``).

Params: ``params.yaml: dedup``, ``DedupParams`` in ``params.py``; where the work runs is
``params.yaml: ray`` (``ray_tasks/executor.py``), with identical outputs either way.

Metrics (``metrics/dedup.json``): ``files_in, files_kept, files_rejected, duplicate_fraction,
exact_removed, exact_repo_removed, near_removed, rejected_by_reason, superseded_in_index,
signatures_computed, lsh_edges, clusters, largest_cluster, index_docs, used_ray``.

Entry: ``stage.dedup`` then ``stage.write_kept`` (its steps: ``source.py`` for the input's row
groups, ``tasks.py`` for the map tasks on Ray or here, ``lsh.py`` for signatures, buckets,
verification and union-find, ``minhash.py`` for shingles and signatures, ``index.py`` for the
index on disk, ``sigcache.py`` for the signatures kept across runs by content hash);
the flow is ``flows/dedup.py``, the command ``flows/cli/dedup.py``.

Work folder (not an output): ``.starflow/work/dedup/signatures/`` keeps every signature by its
content's sha256, so a re-run signs only contents it has not seen (the outputs and metrics are the
same byte for byte); ``.starflow/work/dedup/last_run.json`` has ``signatures_computed`` and
``signatures_from_cache`` of the last run.
"""
