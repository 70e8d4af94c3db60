"""Running untrusted programs (model samples) in a sandbox, in parallel on Ray or in this process.

    with Sandbox(SandboxParams(timeout_s=3)) as sb:
        sb.run("assert 1 + 1 == 2").status          # "passed"
    run_sandboxed(sources, limits, use_ray=True, local_workers=2)   # results in input order, on Ray
                                                                    # or (use_ray=False) in this process

A ``Sandbox`` owns one executor process (``ray_tasks/evaluate/zygote.py``, started as ``python -I -S``:
standard library only, empty environment, no inherited descriptors). The executor forks a
jailed child per program: its own PID namespace, session, temp dir, rlimits, a fresh
unprivileged uid when run as root, Landlock, a seccomp filter refusing IP sockets, no
network (the zygote's docstring lists every layer and the pass-marker design with its
limits). A program passes only when it
ran to its end and the runner echoed the per-sample nonce after the checks: exit code 0
alone is not a pass. Whatever the child does, this process only sees a JSON verdict; if
the executor itself dies, the sample is failed and a new executor is started.

The limits are ``evaluate.sandbox`` of params.yaml (``SandboxParams``); the zygote cannot
import Pydantic, so each request carries them as a plain dict (``zygote_limits``).

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

from ray_tasks.evaluate.params import SandboxParams

ZYGOTE = Path(__file__).with_name("zygote.py")

MAX_OPEN_FILES = 64
"""File descriptors a program may hold (RLIMIT_NOFILE); a fixed limit, not a setting."""


def zygote_limits(limits: SandboxParams) -> dict[str, Any]:
    """The limits as the zygote reads them from each request: every field of ``SandboxParams``
    that applies to one program (``workers`` is the caller's), plus ``max_open_files``."""
    return {**limits.model_dump(exclude={"workers"}), "max_open_files": MAX_OPEN_FILES}


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

    def __init__(self, limits: SandboxParams, pidns: str = "auto"):
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

    def run(self, source: str, limits: SandboxParams | None = None) -> ExecResult:
        """One program under ``limits`` (default: this sandbox's)."""
        req = {**zygote_limits(limits or self.limits), "source": source}
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


def isolation_report() -> dict[str, Any]:
    """Which layers this machine grants the sandbox (what ``Sandbox.isolation`` says)."""
    with Sandbox(SandboxParams(timeout_s=2)) as sb:
        return {**sb.isolation, "network_isolated": sb.network_isolated}


_EXECUTOR: Sandbox | None = None
"""This process's executor: a Ray worker process keeps it between tasks (limits travel per call)."""


def run_batch(sources: list[str], limits: SandboxParams) -> list[dict]:
    """Programs one after another on this process's executor (started on first use)."""
    global _EXECUTOR
    if _EXECUTOR is None or not _EXECUTOR.alive:
        _EXECUTOR = Sandbox(limits)
    return [asdict(_EXECUTOR.run(s, limits)) for s in sources]


def run_sandboxed(sources: list[str], limits: SandboxParams, *, use_ray: bool, local_workers: int) -> list[dict]:
    """Every program under ``limits``, results in input order, identical on either path: on Ray
    tasks, or on executors in this process. ``limits.workers`` run at once; unset, one per CPU
    Ray has, or ``local_workers`` in this process."""
    if use_ray:
        return run_programs(sources, limits, limits.workers)
    return run_local(sources, limits, limits.workers or local_workers)


def run_programs(sources: list[str], limits: SandboxParams, workers: int | None) -> list[dict]:
    """Run programs as Ray tasks (Ray must be initialised); results in input order.

    ``workers``: programs at once (None: one per CPU Ray has). Each Ray worker process
    starts one executor on its first batch and keeps it, so a program costs a fork, not an
    interpreter start. Programs go out in small chunks so that one slow program does not
    hold a whole batch behind it.
    """
    import ray

    if not sources:
        return []
    workers = max(1, workers or int(ray.cluster_resources().get("CPU", 1)))
    chunk = max(1, min(16, math.ceil(len(sources) / (workers * 6))))
    remote = ray.remote(num_cpus=1, max_retries=0)(run_batch)
    refs = [remote.remote(sources[i : i + chunk], limits) for i in range(0, len(sources), chunk)]
    return [r for batch in ray.get(refs) for r in batch]


def run_local(sources: list[str], limits: SandboxParams, workers: int) -> list[dict]:
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
