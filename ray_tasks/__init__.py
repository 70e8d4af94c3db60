"""The data side of StarFlow: pure functions over Arrow tables and batches, parallel on Ray.

One package per DAG stage, each named as its ``dvc.yaml`` stage and documented in its
``__init__`` (inputs, outputs, params section, metrics): ``ingest/``, ``dedup/``, ``curate/``,
``tokenize/``, ``evaluate/``. Beside them, a small shared core: ``tables`` (schemas, reading,
atomic writes), ``executor`` (where parallel work runs; the one place Ray starts and stops),
``stats`` (breakdowns and examples for stats.json), ``language`` (file name -> language) and
``params`` (the base of every stage's typed params). Steps run in one process in tests and
on Ray in the stages, with identical results. Nothing here imports Prefect, ``flows`` or
``models``.
"""
