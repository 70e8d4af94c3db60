"""The torch side of StarFlow, and the ``train`` stage's contract.

Input: ``data/tokenize/`` read by its file format only (``manifest.json`` and the ``stage1`` /
``stage2`` shards, ``data.py``; the tokenizer's HF files in ``tokenizer/``).

Outputs in ``data/train/``:

* ``model/``: the HF export (``save_pretrained``: config, ``model.safetensors``, tokenizer files)
  of the last training stage, with ``training_data.json``, its training-data record
  (``continuation.py``: data version, tokenizer digest, the identity of every training shard,
  its parent model and lineage tags), which travels with the model into the registry;
* ``checkpoint/``: its final DeepSpeed checkpoint (``latest``, ``step{N}/``, ``zero_to_fp32.py``)
  with ``run_config.json``, the run's resume fingerprint;
* ``ds_config.stage{1,2}.json``: the DeepSpeed config of each stage.

Params: ``params.yaml: train``, ``TrainParams`` in ``params.py`` (stage 2's own values in
``train.stage2``; a continued run's in ``train.continued``, with ``train.init_from``); ``run.py``
turns them into the stages' runs.

Continued training: ``init_from`` is a local HF folder here (the flow resolves ``champion`` or a
version in the registry and downloads it); ``continuation.py`` checks that the parent fits (same
tokenizer digest, vocabulary and weight shapes) and splits the training shards into new and old
by content identity; ``data.py: mixed_batch`` draws ``replay_fraction`` of every batch from old.

Metrics (``metrics/train.json``): ``steps, val_loss_before, val_loss_after, val_loss_drop,
tokens_seen, num_parameters, mlflow_run_id``, ``init`` (``from``: ``scratch`` or ``NAME/VERSION``;
``fallback``: why a ``champion`` run trained from scratch), and per stage (``stage1``, ``stage2``):
``steps, resumed_from_step, tokens_seen, val_loss_before, val_loss_after, train_loss_last,
seconds, tokens_per_second, num_parameters, checkpoint_tag, mfu`` (a continued run's also
``data_mix``: new and old shards and sequences, the replay share); the loss curve is
``metrics/train_history.csv`` (``step, stage, train_loss, val_loss, lr, grad_norm, tokens_per_second``).

Entry: ``train.train`` (one run); ``run.py`` (what a run is, its fingerprint, the two stages),
``presets.py`` (architectures), ``launch.py`` (torchrun, Ray Train) and ``distributed.py``
(the process group inside a rank). The flow is ``flows/train.py``. ``generate.py``,
``perplexity.py`` and ``pyfunc.py`` serve the evaluate stage and the registered model.

Imports neither ``flows`` nor ``ray_tasks``, so that a training node needs nothing of the data side.
"""
