"""Parameters of the train stage (``params.yaml: train``): model shape, DeepSpeed, schedule, stage 2.

Their own base, not ``ray_tasks.params``: the torch side imports neither ``flows`` nor
``ray_tasks``, so that a training node needs nothing of the data side.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TrainSection(BaseModel):
    """Strict (an unknown key is an error), documented by attribute docstrings, immutable."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


class ModelParams(TrainSection):
    """StarCoder2 architecture: a preset (models/presets.py), optionally with fields overridden.

    ``tiny`` trains on a CPU in minutes; ``3b``/``7b``/``15b`` are the released shapes."""

    preset: Literal["tiny", "3b", "7b", "15b"] = "tiny"
    hidden_size: int | None = Field(default=None, gt=0)
    num_hidden_layers: int | None = Field(default=None, gt=0)
    num_attention_heads: int | None = Field(default=None, gt=0)
    num_key_value_heads: int | None = Field(default=None, gt=0)
    """GQA: query heads share this many key/value heads."""
    intermediate_size: int | None = Field(default=None, gt=0)
    """MLP width (StarCoder2: 4x hidden)."""
    max_position_embeddings: int | None = Field(default=None, gt=0)
    sliding_window: int | None = Field(default=None, gt=0)
    """Sliding-window attention span."""
    rope_theta: float | None = Field(default=None, gt=0)
    """RoPE base for stage 1 (StarCoder2: 1e5)."""
    tie_word_embeddings: bool | None = None
    """Share input and output embeddings (3B/7B yes, 15B no)."""

    def overrides(self) -> dict:
        return {k: v for k, v in self.model_dump(exclude={"preset"}).items() if v is not None}

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelParams:
        from models.presets import PRESETS

        shape = {**PRESETS[self.preset].__dict__, **self.overrides()}
        if shape["hidden_size"] % shape["num_attention_heads"]:
            raise ValueError("hidden_size must be divisible by num_attention_heads")
        if shape["num_attention_heads"] % shape["num_key_value_heads"]:
            raise ValueError("num_attention_heads must be divisible by num_key_value_heads")
        return self


class Stage2Params(TrainSection):
    """Long-context continuation (StarCoder2 stage 2): stage 1's weights, longer sequences, larger RoPE theta."""

    max_steps: int = Field(default=100, ge=0)
    """Optimizer steps at ``tokenize.seq_len_stage2`` (0: no stage 2)."""
    lr: float = Field(default=2e-4, gt=0)
    """Peak learning rate (paper: a tenth of stage 1's)."""
    warmup_steps: int = Field(default=10, ge=0)
    rope_theta: float = Field(default=1_000_000.0, gt=0)
    """RoPE base for the long context (paper: 10x stage 1's)."""
    micro_batch_size: int = Field(default=2, gt=0)
    eval_every: int = Field(default=50, gt=0)
    checkpoint_every: int = Field(default=50, gt=0)


class TrainParams(TrainSection):
    model: ModelParams = Field(default_factory=ModelParams)
    zero_stage: Literal[0, 1, 2, 3] = 1
    """DeepSpeed ZeRO stage."""
    dtype: Literal["fp32", "bf16"] = "fp32"
    """Training precision (bf16 is ~50x slower on CPUs without AMX: use fp32 there)."""
    micro_batch_size: int = Field(default=8, gt=0)
    grad_accum_steps: int = Field(default=1, gt=0)
    max_steps: int = Field(default=300, gt=0)
    """Stage-1 optimizer steps."""
    lr: float = Field(default=2e-3, gt=0)
    """Peak learning rate."""
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1)
    """Cosine decay floor as a fraction of the peak (paper: peak/10)."""
    warmup_steps: int = Field(default=30, ge=0)
    weight_decay: float = Field(default=0.1, ge=0)
    adam_beta1: float = Field(default=0.9, gt=0, lt=1)
    adam_beta2: float = Field(default=0.95, gt=0, lt=1)
    adam_eps: float = Field(default=1e-8, gt=0)
    grad_clip: float = Field(default=1.0, gt=0)
    gradient_checkpointing: bool = False
    """Activation checkpointing: recompute activations in backward (less memory, more compute)."""
    eval_every: int = Field(default=50, gt=0)
    """Validate every this many steps."""
    eval_batches: int = Field(default=16, gt=0)
    """Validation batches per evaluation."""
    checkpoint_every: int = Field(default=100, gt=0)
    """Save a DeepSpeed checkpoint every this many steps (and at the end)."""
    num_processes: int = Field(default=1, ge=1)
    """Data-parallel ranks on this machine (1: train in-process; >1: launched with torchrun)."""
    seed: int = 0
    torch_threads: int | None = Field(default=None, gt=0)
    """Intra-op CPU threads (None: torch's default)."""
    peak_flops: float | None = Field(default=None, gt=0)
    """Peak FLOP/s of one device for the MFU estimate (e.g. 9.89e14 for an H100 in bf16; None: no MFU)."""
    stage2: Stage2Params = Field(default_factory=Stage2Params)
