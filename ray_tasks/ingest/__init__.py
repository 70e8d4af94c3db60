"""Stage ``ingest``: the configured sources -> one table of text files, every skip counted
with a reason (the StarCoder2 paper, https://arxiv.org/abs/2402.19173, §2.1).

Input: the ``ingest.sources`` entries: installed Python distributions (the embedded default),
a folder of repositories, git repositories, or Parquet/JSONL tables in The Stack v2's schema
(``sources.py``). Nothing under ``data/``.

Outputs in ``data/ingest/``:

* ``files/``: a partitioned dataset (``ray_tasks/datasets.py``: ``part-NNNNN.parquet`` files and
  ``_manifest.json``), ``repo_name, path, content, length_bytes, sha256, src_encoding, source,
  license_type, detected_licenses, language, star_events_count, fork_events_count, revision_id,
  revision_date, visit_date`` (``stage.FILES_SCHEMA``), one row per kept file, repositories
  in source order and files in path order; part i holds group i's whole repositories.
* ``rejected.parquet``: ``stage, reason, repo_name, path, length_bytes, sha256, detail``
  (``ray_tasks.tables.REJECTED_SCHEMA``); ``reason`` is ``too_large``, ``binary``,
  ``undecodable``, ``unreadable``, ``opt_out``, ``no_content`` or ``unreadable_<format>``.
* ``repos.parquet``: ``repo_name, source, license_type, detected_licenses, declared_licenses,
  license_files, files`` per repository (absent when there is none).
* ``stats.json``: the metrics below plus ``rejected_examples``.

Outputs are written as results arrive, in row groups of about ``row_group_bytes`` of content
(readers can read a row group at a time): each group's part atomically, the manifest last;
``rejected.parquet`` and ``repos.parquet`` are single files streamed in group order. Finished
groups are kept in a work folder (``stage.GroupStore``, ``.starflow/work/ingest`` in the flow) by
key (``groups.group_key``: the repositories, a stat of every file they read, the settings and
code that change their rows), so a killed run resumes and a repeated run reuses every group,
with byte-identical outputs.

Params: ``params.yaml: ingest``, ``IngestParams`` in ``params.py`` (sources, ``max_file_bytes``,
``opt_out``, and the memory knobs ``batch_bytes``, ``max_in_flight``, ``row_group_bytes``).

How it runs: the sources list repositories in the driver (names, paths, sizes; a Parquet
source only its ``repo_name`` column, a row group at a time). Repositories are grouped into
units of about ``batch_bytes`` (``groups.py``); each group is read, decoded and
license-scanned as one Ray task when the executor chooses Ray (``ray_tasks.executor``), else
in this process, at most ``max_in_flight`` groups at a time, and its rows are written in
group order as they arrive (``parquet_stream.py``), so outputs are the same either way and
the driver never holds a whole table. License files that are a known license text are
answered by a hash of their normalised text (``license_known.py``); only the rest loads
ScanCode (``license_scan.py``, once per process). Progress (files, bytes, repositories, rate,
ETA) goes to the log and, from the flow, to a Prefect progress artifact (``ray_tasks.progress``).

Metrics (``metrics/ingest.json``, ``stage.ingest_stats``): ``repositories, files_seen,
files_kept, files_rejected, bytes_kept, rejected_by_reason, repositories_by_license_type,
files_by_license_type, non_utf8_files``.

Entry: ``stage.ingest_to`` over ``sources.repositories`` (``stage.ingest``: the same in memory,
for small inputs and tests; licenses: ``licenses.py`` finds and
classifies them, ``license_scan.py`` runs ScanCode); the flow is ``flows/ingest.py``, the
commands ``flows/cli/curation.py`` (``starflow license detect``, ``starflow curate``).
"""
