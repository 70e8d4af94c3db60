"""Running untrusted programs (model samples) in a subprocess sandbox.

Each program runs in its own ``python -I -S`` process (isolated mode, no
site-packages: samples get the standard library only), in a fresh temporary
directory, with an empty environment, its own session (the whole process group
is killed on timeout), resource limits (address space, CPU seconds, file size,
open files, no core dumps) and, when the kernel allows it, a private network
namespace with no interfaces. That is the isolation a subprocess can give; it is
not a VM: run evaluation of untrusted models on a machine you can lose.

``run_programs`` fans programs out over Ray tasks; ``run_program`` is the unit.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass

CLONE_NEWNET = 0x40000000
_OUTPUT_CAP = 2048


@dataclass
class ExecResult:
    status: str
    """passed | failed | timeout"""
    returncode: int | None
    stderr_tail: str
    network_isolated: bool


def _limits(memory_mb: int, cpu_s: int, isolate_network: bool):
    def apply() -> None:
        mem = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024 * 1024,) * 2)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if isolate_network:
            ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNET)

    return apply


def network_isolation_available() -> bool:
    """Whether a child can get a private network namespace here (root or user namespaces)."""
    probe = [sys.executable, "-I", "-c", "import socket; print(len(socket.if_nameindex()))"]
    try:
        out = subprocess.run(probe, preexec_fn=_limits(512, 5, True), capture_output=True, text=True, timeout=10)
        return out.returncode == 0 and out.stdout.strip() in {"0", "1"}  # only loopback, down
    except (OSError, subprocess.SubprocessError):
        return False


def run_program(source: str, timeout_s: float, memory_mb: int, isolate_network: bool = True) -> ExecResult:
    with tempfile.TemporaryDirectory(prefix="starflow-sandbox-") as tmp:
        path = os.path.join(tmp, "program.py")
        with open(path, "w") as fh:
            fh.write(source)
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", path],
            cwd=tmp,
            env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "HOME": tmp},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_limits(memory_mb, int(timeout_s) + 1, isolate_network),
        )
        try:
            _, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            return ExecResult("timeout", None, "", isolate_network)
        finally:
            _kill_group(proc)
        tail = err[-_OUTPUT_CAP:].decode("utf-8", "replace")
        return ExecResult("passed" if proc.returncode == 0 else "failed", proc.returncode, tail, isolate_network)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_batch(sources: list[str], timeout_s: float, memory_mb: int, isolate_network: bool) -> list[dict]:
    return [asdict(run_program(s, timeout_s, memory_mb, isolate_network)) for s in sources]


def run_programs(sources: list[str], timeout_s: float, memory_mb: int, chunk: int = 8) -> list[dict]:
    """Run programs on Ray tasks (Ray must be initialised), results in input order."""
    import ray

    isolate = network_isolation_available()
    remote = ray.remote(num_cpus=1)(run_batch)
    refs = [remote.remote(sources[i : i + chunk], timeout_s, memory_mb, isolate) for i in range(0, len(sources), chunk)]
    return [r for batch in ray.get(refs) for r in batch]
