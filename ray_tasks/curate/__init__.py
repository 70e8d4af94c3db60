"""Stage ``curate``: The Stack v2's license, language and quality filters, malware and benchmark
cuts, then PII redaction of what is kept (the StarCoder2 paper, https://arxiv.org/abs/2402.19173,
§2.1 and §3).

Input: ``data/dedup/files/``, a partitioned dataset (``ray_tasks/datasets.py``; a single Parquet
file is taken as one part), one row per file, each part holding whole repositories. Needs ``repo_name, path, content,
length_bytes, sha256, license_type``; uses ``language`` when the source gave one (else detects
it, ray_tasks/language.py). Every other column passes through.

Outputs in ``data/curate/``:

* ``files/``: the kept rows, a partitioned dataset whose part i holds the kept rows of input part i,
  in input order (``_manifest.json`` last), every input column (``content`` with PII
  replaced, ``length_bytes`` following it; ``sha256`` still names the source file) plus
  ``language, is_vendor, is_generated, alpha_fraction, alphanum_fraction, num_lines,
  avg_line_length, max_line_length``.
* ``rejected.parquet``: ``stage, reason, repo_name, path, length_bytes, sha256, detail``
  (``ray_tasks.tables.REJECTED_SCHEMA``); ``reason`` is the first failing filter's
  (``license:<class>``, ``unknown_language``, ``alpha_fraction``, ``malware:<engine>:<signature>``,
  ``contamination:<benchmark>``...), ``detail`` the file's language.
* ``contamination.parquet``: ``repo_name, path, sha256, benchmark, item_id, field``: the
  benchmark item each file dropped for contamination matched.
* ``stats.json``: files and bytes in, kept and rejected, by reason, language and license
  class, examples per reason, PII counts, malware engines run, contamination per benchmark.

Params: ``params.yaml: curate``, ``CurateParams`` in ``params.py`` (``quality``, ``pii``,
``malware``, ``decontamination`` sub-sections; ``max_in_flight`` bounds the parts in flight);
where the parts run is ``params.yaml: ray`` (``ray_tasks/executor.py``), with identical outputs
either way. Memory: a row group and a batch per worker, whatever the size of the input or of
its parts; an interrupted run resumes from the parts it finished (``.starflow/curate``,
``parts.py``).

Metrics (``metrics/curate.json``, ``stats.metrics``): ``files_in, bytes_in, files_kept,
bytes_kept, files_rejected, bytes_rejected, kept_vendor_files, pii_email, pii_ip_address,
pii_key, pii_password, pii_files, files_malware, files_contaminated, rejected_by_reason,
kept_by_license_type, kept_by_language`` (top 20).

Entry: ``parts.curate_dataset`` (a unit per part, resumable, the output assembled whole), which
runs ``stage.curate_table`` on each part (its steps: ``filters.py`` annotates a batch and runs the filters,
``provenance.py`` flags vendored and generated files, ``privacy.py`` builds the ``malware.py``
and ``decontaminate.py`` filters and runs ``pii.py``'s redaction, ``stats.py`` counts and merges the
parts' accounts); the
flow is ``flows/curate.py``, the commands ``flows/cli/privacy.py`` (``starflow pii``,
``starflow decontaminate``) and ``flows/cli/curation.py`` (``starflow curate``, ``lang``, ``license``).
"""
