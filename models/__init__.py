"""The torch side of StarFlow, and the ``train`` stage's contract.

Input: ``data/tokenize/`` read by its file format only (``manifest.json`` and the ``stage1`` /
``stage2`` shards, ``data.py``; the tokenizer's HF files in ``tokenizer/``).

Outputs in ``data/train/``:

* ``model/``: the HF export (``save_pretrained``: config, ``model.safetensors``, tokenizer files)
  of the last training stage;
* ``checkpoint/``: its final DeepSpeed checkpoint (``latest``, ``step{N}/``, ``zero_to_fp32.py``)
  with ``run_config.json``, the run's resume fingerprint;
* ``ds_config.stage{1,2}.json``: the DeepSpeed config of each stage.

Params: ``params.yaml: train``, ``TrainParams`` in ``params.py`` (stage 2's own values in
``train.stage2``); ``run.py`` turns them into the stages' runs.

Metrics (``metrics/train.json``): ``steps, val_loss_before, val_loss_after, val_loss_drop,
tokens_seen, num_parameters, mlflow_run_id``, and per stage (``stage1``, ``stage2``):
``steps, resumed_from_step, tokens_seen, val_loss_before, val_loss_after, train_loss_last,
seconds, tokens_per_second, num_parameters, checkpoint_tag, mfu``; the loss curve is
``metrics/train_history.csv`` (``step, stage, train_loss, val_loss, lr, grad_norm, tokens_per_second``).

Entry: ``train.train`` (one run); ``run.py`` (what a run is, its fingerprint, the two stages),
``presets.py`` (architectures), ``launch.py`` (torchrun, Ray Train) and ``distributed.py``
(the process group inside a rank). The flow is ``flows/train.py``. ``generate.py``,
``perplexity.py`` and ``pyfunc.py`` serve the evaluate stage and the registered model.

Imports neither ``flows`` nor ``ray_tasks``, so that a training node needs nothing of the data side.
"""
