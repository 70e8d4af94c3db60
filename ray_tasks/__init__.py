"""The data side of StarFlow: pure functions over Arrow tables and batches.

Each module is one step of the DAG's data work (sources, licenses, language,
filters, dedup, tokenizer, packing, sandboxed execution, pass@k). Steps run
without Ray in tests and under Ray Data in the stages, with identical results.
Nothing here imports Prefect, ``flows`` or ``models``.
"""
