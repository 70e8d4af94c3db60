"""Stage ``attribution``: was this code in the training data, and whose is it?

StarCoder shipped an attribution tool and BigCode a search beside The Stack
(https://huggingface.co/spaces/bigcode/search); this stage builds the same for every dataset
version StarFlow trains on: a portrait (Data Portraits, https://arxiv.org/abs/2303.03919: a Bloom
filter of strided 50-character windows, ``portrait.py``) for a fast first pass, and a tantivy
full-text index (BM25, phrase queries; ``fulltext.py``) that names repository, path, licenses
and the matching span for the second (``trace.py``).

Input: ``data/curate/files.parquet`` (``ray_tasks/curate/__init__.py``): needs ``repo_name, path,
content, length_bytes, sha256``; uses ``license_type`` and ``detected_licenses`` when present.
At query time ``--repo`` also reads ``data/{ingest,dedup,curate}/rejected.parquet`` (``removals.py``).

Outputs in ``data/attribution/``:

* ``portrait/segment-NNNNN.bloom``: one rbloom filter per segment (a batch of added files).
* ``fulltext/``: the tantivy index (``repo_name, path, sha256, license_type, detected_licenses,
  content`` stored; ``content`` tokenized with positions).
* ``files.parquet``: ``repo_name, path, sha256, license_type, detected_licenses, length_bytes,
  segment``: what is indexed (no content).
* ``manifest.json``: the segments, the window settings, the DVC data version (md5 of
  ``data/curate`` in ``dvc.lock``) and the build figures.

Params: ``params.yaml: attribution``, ``AttributionParams`` in ``params.py``. The window settings
(``window_chars, stride_chars, false_positive_rate``) shape the index; the others only queries.

Metrics (``metrics/attribution.json``): ``files, files_added, incremental, repositories, windows,
segments, content_bytes, portrait_bytes, fulltext_bytes, index_to_data_ratio, build_s,
false_positive_rate, data_version``.

Entry: ``stage.build``; queries ``trace.Attribution`` (``trace``, ``memorised``) and
``removals.repository``; the flow is ``flows/attribution.py``, the command ``flows/cli/trace.py``
(``starflow trace FILE|-``, ``starflow trace --repo OWNER/NAME``), and ``flows/evaluate.py``
reports the model's memorisation with ``Attribution.memorised``.
"""
