"""What one training run is: its settings, its inputs and outputs; the train stage's two runs.

A ``TrainRun`` is what ``models.train.train`` takes, what ``python -m models.train --config
run.json`` reads (``run.model_dump_json()``), what a Ray Train worker gets, and what the train
stage logs to MLflow. Its settings are one ``TrainParams`` (models/params.py), not a copy:
stage 1's as given, stage 2's with the ``Stage2Params`` fields in place of theirs. The other
fields are not settings: paths, the shard length, the weights to start from, the resolved
model shape.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from models.params import ModelShape, TrainParams


class DataMix(BaseModel):
    """A continued run's training data: shard files of its stage length, split into new and old
    (models/continuation.py: data_mix); ``models/data.py: mixed_batch`` draws from them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    new: list[str]
    """Shards the parent model did not train on."""
    old: list[str]
    """Shards the parent trained on: replayed."""
    replay_fraction: float
    """Share of every batch from ``old`` (``train.continued.replay_fraction``)."""

    def effective_replay(self) -> float:
        """The share of old rows a batch really has: ``replay_fraction``, or 0 with no old shard,
        1 with no new one."""
        if not self.old:
            return 0.0
        return self.replay_fraction if self.new else 1.0


class TrainRun(BaseModel):
    """Everything one training run needs; its fingerprint is written beside its checkpoints as run_config.json."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    hparams: TrainParams
    """The run's settings (``hparams.stage2`` is not read: a stage-2 run has its fields merged in)."""
    shape: ModelShape
    """The architecture built: ``hparams.model`` resolved, for stage 2 with the long context's changes."""
    shards_dir: str
    """The tokenize stage's output (manifest.json and shards; models/data.py)."""
    tokenizer_dir: str
    """HF tokenizer files, copied into the export."""
    work_dir: str
    """Checkpoints go here while training; a rerun with the same fingerprint resumes from them."""
    data_stage: Literal["stage1", "stage2"] = "stage1"
    """Which shard length to train on: ``stage1`` (base) or ``stage2`` (long context)."""
    init_from: str | None = None
    """An HF model folder whose weights start this run (stage 2 starts from stage 1's export; a
    continued stage 1 from the parent model's)."""
    mix: DataMix | None = None
    """A continued run's new and old shards (None: every training shard, drawn uniformly)."""

    def fingerprint(self) -> str:
        """What must match for a checkpoint in work_dir to be resumable: this run and the same data.

        Left out: where it writes (``work_dir``), the rank count (``num_processes``), and what
        ``shape``, the merged ``hparams`` and the weights' hash already hold (``model``, ``stage2``,
        ``continued``, ``init_from``), so that a stage-2 or continuation setting never restarts a run
        that does not use it (a scratch run's fingerprint is what it was before continued
        training existed). The shard manifest carries a hash of every split's
        token stream, so new data never resumes from a checkpoint trained on old data.
        """
        exclude = {"work_dir": True, "hparams": {"model", "num_processes", "stage2", "init_from", "continued"}}
        if self.mix is None:
            exclude["mix"] = True
        d = self.model_dump(mode="json", exclude=exclude)
        if self.init_from:
            weights = Path(self.init_from) / "model.safetensors"
            d["init_weights"] = hashlib.sha256(weights.read_bytes()).hexdigest() if weights.exists() else None
        manifest = Path(self.shards_dir) / "manifest.json"
        d["data"] = hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.exists() else None
        return json.dumps(d, sort_keys=True, default=str)

    def with_absolute_paths(self) -> TrainRun:
        """The same run with absolute paths, for workers that may start in another directory."""
        paths = {k: str(Path(v).resolve()) for k in ("shards_dir", "tokenizer_dir", "work_dir", "init_from")
                 if (v := getattr(self, k))}
        return self.model_copy(update=paths)


class Parent(BaseModel):
    """The model a continued run starts from, as the flow resolved it to a local folder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_dir: str
    """Its HF export (weights, config.json, tokenizer files, training_data.json)."""
    record: dict | None = None
    """Its training-data record (models/continuation.py), None when it has none."""


def stage_runs(params: TrainParams, shards_dir: Path, work_root: Path, seq_len_stage2: int,
               parent: Parent | None = None) -> list[TrainRun]:
    """Stage 1 at the short context; stage 2 (when it has steps) continues from stage 1's weights
    (exported to ``work_root/stage1_export``) at the long context with a larger RoPE theta and its
    own schedule. Each has its own work dir, so each resumes on its own.

    With a ``parent`` (continued training), stage 1 starts from its weights with the
    ``train.continued`` schedule, and both stages draw from the new and old shards of their stage
    length (``replay_fraction`` of every batch from old)."""
    from models.continuation import data_mix

    shape = params.model.shape()
    stage1 = TrainRun(hparams=params, shape=shape, shards_dir=str(shards_dir),
                      tokenizer_dir=str(shards_dir / "tokenizer"), work_dir=str(work_root / "stage1"))
    if parent is not None:
        cont = params.continued
        stage1 = stage1.model_copy(update={
            "hparams": params.model_copy(update=cont.model_dump(exclude={"replay_fraction"})),
            "init_from": parent.model_dir,
            "mix": data_mix(shards_dir, "stage1", parent.record, cont.replay_fraction)})
    s2 = params.stage2
    if not s2.max_steps:
        return [stage1]
    stage2 = stage1.model_copy(update={
        "hparams": params.model_copy(update=s2.model_dump(exclude={"rope_theta"})),
        "shape": shape.replace(rope_theta=s2.rope_theta,
                               max_position_embeddings=max(shape.max_position_embeddings, seq_len_stage2)),
        "work_dir": str(work_root / "stage2"), "data_stage": "stage2", "init_from": str(work_root / "stage1_export"),
        "mix": data_mix(shards_dir, "stage2", parent.record, params.continued.replay_fraction) if parent else None,
    })
    return [stage1, stage2]


def deepspeed_config(run: TrainRun) -> dict:
    """The DeepSpeed config of a run, all from its settings (kept with the run and in MLflow)."""
    hp = run.hparams
    return {
        "train_micro_batch_size_per_gpu": hp.micro_batch_size,
        "gradient_accumulation_steps": hp.grad_accum_steps,
        "gradient_clipping": hp.grad_clip,
        "zero_optimization": {"stage": hp.zero_stage},
        "bf16": {"enabled": hp.dtype == "bf16"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
