"""Stage ``ingest``: the configured sources -> one table of text files, every skip counted
with a reason (the StarCoder2 paper, https://arxiv.org/abs/2402.19173, §2.1).

Input: the ``ingest.sources`` entries: installed Python distributions (the embedded default),
a folder of repositories, git repositories, or Parquet/JSONL tables in The Stack v2's schema
(``sources.py``). Nothing under ``data/``.

Outputs in ``data/ingest/``:

* ``files.parquet``: ``repo_name, path, content, length_bytes, sha256, src_encoding, source,
  license_type, detected_licenses, language, star_events_count, fork_events_count, revision_id,
  revision_date, visit_date`` (``stage.FILES_SCHEMA``), one row per kept file, repositories
  in source order and files in path order.
* ``rejected.parquet``: ``stage, reason, repo_name, path, length_bytes, sha256, detail``
  (``ray_tasks.tables.REJECTED_SCHEMA``); ``reason`` is ``too_large``, ``binary``,
  ``undecodable``, ``unreadable``, ``opt_out``, ``no_content`` or ``unreadable_<format>``.
* ``repos.parquet``: ``repo_name, source, license_type, detected_licenses, declared_licenses,
  license_files, files`` per repository (absent when there is none).
* ``stats.json``: the metrics below plus ``rejected_examples``.

Params: ``params.yaml: ingest``, ``IngestParams`` in ``params.py`` (sources, ``max_file_bytes``,
``opt_out``). Runs in one process: reading is I/O, and ScanCode's license index
(``license_scan.py``) is loaded once.

Metrics (``metrics/ingest.json``, ``stage.ingest_stats``): ``repositories, files_seen,
files_kept, files_rejected, bytes_kept, rejected_by_reason, repositories_by_license_type,
files_by_license_type, non_utf8_files``.

Entry: ``stage.ingest`` over ``sources.repositories`` (licenses: ``licenses.py`` finds and
classifies them, ``license_scan.py`` runs ScanCode); the flow is ``flows/ingest.py``, the
commands ``flows/cli/curation.py`` (``starflow license detect``, ``starflow curate``).
"""
