"""Parameters of the tokenize stage (``params.yaml: tokenize``): tokenizer, repository documents, FIM, packing, split."""

from __future__ import annotations

from pydantic import Field, model_validator

from ray_tasks.params import StageParams


class TokenizeParams(StageParams):
    """How curated files become training sequences; read by the stage code directly (ray_tasks/tokenize/stage.py)."""

    tokenizer_path: str | None = None
    """Use this tokenizer (HF folder or tokenizer.json with the 38 special tokens) instead of training one."""
    tokenizer_version: int = Field(default=1, ge=1)
    """The stage trains its tokenizer once and keeps it in ``data/tokenizer`` as the data grows (a model
    can then continue on new data: ``ray_tasks/tokenize/kept.py``); bump this to train a new one, which
    means training from scratch (``train.init_from: scratch``)."""
    vocab_size: int = Field(default=4096, ge=300)
    """BPE vocabulary size including the 38 StarCoder2 special tokens (paper: 49152)."""
    min_frequency: int = Field(default=2, ge=1)
    """Minimum pair frequency for a BPE merge."""
    train_max_bytes: int = Field(default=20_000_000, gt=0)
    """Bytes of curated code sampled to train the tokenizer."""
    seq_len: int = Field(default=256, ge=8)
    """Tokens per packed sequence for stage 1 (base pre-training; paper: 4096)."""
    seq_len_stage2: int = Field(default=1024, ge=8)
    """Tokens per packed sequence for stage 2 (long context; paper: 16384)."""
    val_fraction: float = Field(default=0.1, gt=0, lt=1)
    """Fraction of repositories held out for validation (split by repository, never by file)."""
    repo_metadata_prob: float = Field(default=0.5, ge=0, le=1)
    """Probability that a repository document carries ``<repo_name>`` and file paths (SC2: 0.5)."""
    fim_rate: float = Field(default=0.5, ge=0, le=1)
    """Probability that a repository document is a FIM candidate (SC2: 0.5)."""
    fim_fragment_rate: float = Field(default=0.5, ge=0, le=1)
    """Probability that a file fragment of a candidate document is FIM-transformed (SC2: 0.5)."""
    fim_spm_rate: float = Field(default=0.5, ge=0, le=1)
    """Probability of SPM instead of PSM layout for a transformed fragment (Megatron fork default: 0.5)."""
    shard_sequences: int = Field(default=65536, gt=0)
    """Sequences per shard file."""
    fim_eval_examples: int = Field(default=200, ge=0)
    """Single-line infilling examples cut from validation files for the evaluate stage."""
    repos_per_task: int = Field(default=16, gt=0)
    """Repositories encoded per Ray task (a chunk, cut inside a part); on Ray at most twice the
    cluster's CPUs of chunks are in flight."""
    seed: int = 0
    """Seed for file order, metadata and FIM coin flips, and the split."""

    @model_validator(mode="after")
    def _stage2_longer(self) -> TokenizeParams:
        if self.seq_len_stage2 < self.seq_len:
            raise ValueError("seq_len_stage2 must be >= seq_len")
        return self
