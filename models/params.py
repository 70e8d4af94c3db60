"""Parameters of the train stage (``params.yaml: train``): model shape, DeepSpeed, schedule, stage 2,
continued training.

Their own base, not ``ray_tasks.params``: the torch side imports neither ``flows`` nor
``ray_tasks``, so that a training node needs nothing of the data side.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator
from pydantic.fields import FieldInfo


class TrainSection(BaseModel):
    """Strict (an unknown key is an error), documented by attribute docstrings, immutable."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


class ModelShape(TrainSection):
    """A complete StarCoder2 architecture: the released ones are in models/presets.py.

    Each field is also a ``train.model`` override (``ModelParams``), declared here only."""

    hidden_size: int = Field(gt=0)
    """Width of the residual stream."""
    num_hidden_layers: int = Field(gt=0)
    """Transformer blocks."""
    num_attention_heads: int = Field(gt=0)
    """Query heads per layer."""
    num_key_value_heads: int = Field(gt=0)
    """GQA: query heads share this many key/value heads."""
    intermediate_size: int = Field(gt=0)
    """MLP width (StarCoder2: 4x hidden)."""
    max_position_embeddings: int = Field(gt=0)
    """Longest context the position encoding is configured for."""
    sliding_window: int | None = Field(gt=0)
    """Sliding-window attention span (None: full attention)."""
    rope_theta: float = Field(gt=0)
    """RoPE base for stage 1 (StarCoder2: 1e5)."""
    tie_word_embeddings: bool
    """Share input and output embeddings (3B/7B yes, 15B no)."""

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelShape:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be divisible by num_attention_heads")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be divisible by num_key_value_heads")
        return self

    def replace(self, **changes: Any) -> ModelShape:
        """This shape with some fields changed, validated again."""
        return ModelShape.model_validate({**self.model_dump(), **changes})


class _Preset(TrainSection):
    preset: Literal["tiny", "3b", "7b", "15b"] = "tiny"
    """The architecture to start from (models/presets.py); the fields below override it."""


def _as_overrides(shape: type[BaseModel]) -> dict[str, Any]:
    """Every field of ``shape`` as an optional field (None: keep the preset's value), with its
    constraints and docstring, so that an override is declared once, on the shape."""
    return {name: (f.annotation | None, FieldInfo.merge_field_infos(f, default=None))
            for name, f in shape.model_fields.items()}


_ModelFields = create_model("_ModelFields", __base__=_Preset, **_as_overrides(ModelShape))


class ModelParams(_ModelFields):  # type: ignore[misc, valid-type]
    """StarCoder2 architecture: a preset, optionally with fields of its ``ModelShape`` overridden.

    ``tiny`` trains on a CPU in minutes; ``3b``/``7b``/``15b`` are the released shapes."""

    def overrides(self) -> dict[str, Any]:
        """The fields set here (not None): what replaces the preset's values."""
        return {k: v for k, v in self.model_dump(exclude={"preset"}).items() if v is not None}

    def shape(self) -> ModelShape:
        """The preset with the overrides applied."""
        from models.presets import PRESETS

        return PRESETS[self.preset].replace(**self.overrides())

    @model_validator(mode="after")
    def _valid_shape(self) -> ModelParams:
        try:
            self.shape()
        except ValidationError as exc:  # the shape's own message, under this section's key
            raise ValueError("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None
        return self


class Stage2Params(TrainSection):
    """Long-context continuation (StarCoder2 stage 2): stage 1's weights, longer sequences, larger RoPE theta.

    Except ``rope_theta`` (a shape change), each field replaces the ``TrainParams`` field of
    the same name for stage 2; the other settings are stage 1's."""

    max_steps: int = Field(default=100, ge=0)
    """Optimizer steps at ``tokenize.seq_len_stage2`` (0: no stage 2)."""
    lr: float = Field(default=2e-4, gt=0)
    """Peak learning rate (paper: a tenth of stage 1's)."""
    warmup_steps: int = Field(default=10, ge=0)
    """Linear warmup steps of stage 2's schedule."""
    rope_theta: float = Field(default=1_000_000.0, gt=0)
    """RoPE base for the long context (paper: 10x stage 1's)."""
    micro_batch_size: int = Field(default=2, gt=0)
    """Sequences per rank per micro-step at the long context."""
    eval_every: int = Field(default=50, gt=0)
    """Validate every this many stage-2 steps."""
    checkpoint_every: int = Field(default=50, gt=0)
    """Save a DeepSpeed checkpoint every this many stage-2 steps (and at the end)."""


class ContinuedParams(TrainSection):
    """A continued run's own schedule and data mix (``train.init_from`` not ``scratch``).

    Continuing re-runs the recipe from the parent model's weights: stage 1 with these fields in
    place of the ``TrainParams`` fields of the same name (a fresh optimizer, a new warmup and
    cosine decay), then stage 2 with its own settings as always. Re-warming, re-decaying and
    replaying old data is how continual pre-training matches a retrain on the union at a
    fraction of its cost (Ibrahim et al. 2024, "Simple and Scalable Strategies to Continually
    Pre-train Large Language Models")."""

    max_steps: int = Field(default=300, gt=0)
    """Stage-1 optimizer steps of a continued run (on the new data plus the replayed old)."""
    lr: float = Field(default=1e-3, gt=0)
    """Peak learning rate of a continued run's stage 1 (re-warmed to, then cosine to ``min_lr_ratio``)."""
    warmup_steps: int = Field(default=30, ge=0)
    """Linear warmup steps of a continued run's stage 1."""
    replay_fraction: float = Field(default=0.25, ge=0, le=1)
    """Share of every batch drawn from old shards (those the parent trained on), the rest from the
    new ones; in expectation exactly, batch by batch the nearest counts (seeded). With no new
    shard every row is old, with no old shard every row is new."""


INIT_FROM_SCRATCH, INIT_FROM_CHAMPION = "scratch", "champion"


class TrainParams(TrainSection):
    """How a model is trained: the hyperparameters of one run (stage 1; stage 2 replaces some)."""

    model: ModelParams = Field(default_factory=ModelParams)
    """The architecture."""
    zero_stage: Literal[0, 1, 2, 3] = 1
    """DeepSpeed ZeRO stage."""
    dtype: Literal["fp32", "bf16"] = "fp32"
    """Training precision (bf16 is ~50x slower on CPUs without AMX: use fp32 there)."""
    micro_batch_size: int = Field(default=8, gt=0)
    """Sequences per rank per micro-step."""
    grad_accum_steps: int = Field(default=1, gt=0)
    """Micro-steps per optimizer step."""
    max_steps: int = Field(default=300, gt=0)
    """Stage-1 optimizer steps."""
    lr: float = Field(default=2e-3, gt=0)
    """Peak learning rate."""
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1)
    """Cosine decay floor as a fraction of the peak (paper: peak/10)."""
    warmup_steps: int = Field(default=30, ge=0)
    """Linear warmup steps before the cosine decay."""
    weight_decay: float = Field(default=0.1, ge=0)
    """AdamW weight decay."""
    adam_beta1: float = Field(default=0.9, gt=0, lt=1)
    """AdamW beta1."""
    adam_beta2: float = Field(default=0.95, gt=0, lt=1)
    """AdamW beta2."""
    adam_eps: float = Field(default=1e-8, gt=0)
    """AdamW epsilon."""
    grad_clip: float = Field(default=1.0, gt=0)
    """Gradient norm clipping threshold."""
    gradient_checkpointing: bool = False
    """Activation checkpointing: recompute activations in backward (less memory, ~30% more compute)."""
    eval_every: int = Field(default=50, gt=0)
    """Validate every this many steps."""
    eval_batches: int = Field(default=16, gt=0)
    """Validation batches per evaluation."""
    checkpoint_every: int = Field(default=100, gt=0)
    """Save a DeepSpeed checkpoint every this many steps (and at the end)."""
    num_processes: int = Field(default=1, ge=1)
    """Data-parallel ranks on this machine (1: train in-process; >1: launched with torchrun)."""
    seed: int = 0
    """Seed of the initial weights and of the batch order."""
    torch_threads: int | None = Field(default=None, gt=0)
    """Intra-op CPU threads (None: torch's default)."""
    peak_flops: float | None = Field(default=None, gt=0)
    """Peak FLOP/s of one device for the MFU estimate (e.g. 9.89e14 for an H100 in bf16; None: no MFU)."""
    stage2: Stage2Params = Field(default_factory=Stage2Params)
    """Stage 2, the long-context continuation."""
    init_from: str = INIT_FROM_SCRATCH
    """Weights to start from: ``scratch`` (random), ``champion`` (the registered model's
    ``@champion``; while there is none, scratch with a warning, so a scheduled retrain bootstraps
    itself) or a version number of the registered model (an error if it does not exist). The
    parent's tokenizer and shape must be the data's and the model's: a new tokenizer means
    training from scratch."""
    continued: ContinuedParams = Field(default_factory=ContinuedParams)
    """A continued run's stage-1 schedule and replay share (read only when ``init_from`` is not scratch)."""

    @field_validator("init_from", mode="before")
    @classmethod
    def _init_from_is_known(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):  # ``init_from: 3`` in YAML
            value = str(value)
        if isinstance(value, str) and value not in (INIT_FROM_SCRATCH, INIT_FROM_CHAMPION) and not (
                value.isdigit() and int(value) > 0):
            raise ValueError(f"must be 'scratch', 'champion' or a model version number, not {value!r}")
        return value

    @property
    def continues(self) -> bool:
        """Whether this run asks to start from a registered model's weights."""
        return self.init_from != INIT_FROM_SCRATCH
