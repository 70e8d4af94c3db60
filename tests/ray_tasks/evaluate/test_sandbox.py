"""The sandbox against hostile programs: each must fail, leave nothing behind, and not stop the run.

Hostile programs are bounded twice: by the sandbox's own limits (timeout, RLIMIT_NPROC,
RLIMIT_AS, output cap) set low here, and by pytest's timeout of the whole test. Programs
that would hurt this machine if a layer were missing (kill every process, kill the test
runner) only run without the audit hook when the kernel layers that stop them (PID
namespace, unprivileged uid) are present; with the hook they always run.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

from ray_tasks.evaluate.params import SandboxParams
from ray_tasks.evaluate.sandbox import Sandbox, isolation_report, zygote_limits

LIMITS = SandboxParams(timeout_s=1.0, memory_mb=256, max_processes=16, output_cap_bytes=512, max_output_bytes=64 * 1024)
NO_HOOK = LIMITS.model_copy(update={"audit_hook": False})
CAPS = isolation_report()
KERNEL_CONTAINS_KILLS = CAPS["pidns"] and CAPS["uid_drop"]


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(LIMITS) as sb:
        yield sb


def _uid_processes(uid: int) -> list[int]:
    """Host processes whose real uid is ``uid`` (the sandbox's own uid when run as root)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            line = next(x for x in status.splitlines() if x.startswith("Uid:"))
            if int(line.split()[1]) == uid:
                pids.append(int(entry))
    return pids


def _no_leftovers(sb: Sandbox) -> None:
    if sb.isolation["uid_drop"]:
        deadline = time.monotonic() + 2
        while _uid_processes(sb.isolation["uid"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _uid_processes(sb.isolation["uid"]) == []


# --------------------------------------------------------------------------- wire format
def test_the_zygote_gets_every_limit_as_a_plain_dict():
    """The zygote cannot import Pydantic: each request carries the limits of SandboxParams
    (less ``workers``, the caller's) plus the fixed open-files limit, as JSON-able values."""
    assert zygote_limits(SandboxParams()) == {
        "timeout_s": 3.0, "memory_mb": 1024, "file_size_mb": 16, "max_processes": 8, "max_open_files": 64,
        "output_cap_bytes": 2048, "max_output_bytes": 1 << 20, "audit_hook": True,
    }
    assert zygote_limits(SandboxParams(timeout_s=2, workers=4))["timeout_s"] == 2.0


# --------------------------------------------------------------------------- verdicts
def test_pass_needs_the_marker_not_just_exit_code_zero(sandbox):
    ok = sandbox.run("assert sum([1, 2]) == 3\nprint('checked')")
    assert ok.status == "passed" and ok.marker and ok.returncode == 0 and "checked" in ok.output_tail
    # os._exit(0) before the asserts: exit status 0, but the runner never echoed the nonce.
    early = sandbox.run("import os\nos._exit(0)\nassert False")
    assert early.status == "failed" and early.returncode == 0 and not early.marker
    for src in ("import sys\nsys.exit(0)\nassert False", "raise SystemExit(0)", "assert 1 == 2", "def f(:\n"):
        res = sandbox.run(src)
        assert res.status == "failed" and not res.marker, src
    # Printing a fixed "pass" string is not the marker either.
    assert sandbox.run("print('passed')\nimport os\nos._exit(0)").status == "failed"


def test_clean_environment(sandbox):
    probe = (
        "import os, sys\n"
        "assert os.listdir('.') == [], os.listdir('.')\n"
        "assert set(os.environ) == {'HOME', 'TMPDIR', 'PATH', 'OMP_NUM_THREADS'}, dict(os.environ)\n"
        "assert os.environ['HOME'] == os.getcwd()\n"
        "open('scratch.txt', 'w').write('fine')\n"  # the temp dir itself is writable
        "import numpy\n"  # site-packages are not visible: only the standard library
    )
    res = sandbox.run(probe)
    assert res.status == "failed" and "No module named 'numpy'" in res.output_tail, res.output_tail
    assert sandbox.run(probe.replace("import numpy\n", "import fractions, zoneinfo, csv, encodings.idna, json.tool\n")).status == "passed"
    # Each program gets a fresh directory: the file from the last one is gone, on the host too.
    assert sandbox.run("import os\nassert os.listdir('.') == []").status == "passed"
    assert not [p for p in Path("/tmp").iterdir() if p.name.startswith("sample-")]


def test_proc_is_not_writable(sandbox):
    for src in ("open('/proc/self/mem', 'wb')", "import os\nos.open('/proc/self/mem', os.O_RDWR)",
                "open('/proc/self/oom_score_adj', 'w').write('-1000')"):
        assert sandbox.run(src).status == "failed", src


# --------------------------------------------------------------------------- hostile samples
def test_infinite_loop_times_out(sandbox):
    t0 = time.monotonic()
    res = sandbox.run("while True:\n    pass")
    assert res.status == "timeout" and time.monotonic() - t0 < LIMITS.timeout_s + 2
    _no_leftovers(sandbox)


@pytest.mark.parametrize("limits", [LIMITS, NO_HOOK], ids=["hook", "kernel-only"])
def test_fork_bomb_is_bounded_and_cleaned_up(limits):
    bomb = (
        "import os\n"
        "while True:\n"
        "    try:\n"
        "        os.fork()\n"
        "    except OSError:\n"
        "        pass\n"
    )
    with Sandbox(limits) as sb:
        if not sb.isolation["uid_drop"]:
            pytest.skip("RLIMIT_NPROC bounds a fork bomb only under the sandbox's own uid (run as root)")
        res = sb.run(bomb)
        assert res.status in {"timeout", "failed"}
        _no_leftovers(sb)
        assert sb.run("assert True").status == "passed"


def test_daemon_left_behind_is_killed(sandbox):
    if not sandbox.isolation["pidns"]:
        pytest.skip("no PID namespace here: a setsid daemon could outlive the sample")
    daemon = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(60)\n"
        "    os._exit(0)\n"
        "assert True\n"
    )
    assert sandbox.run(daemon).status == "passed"  # a harmless program that daemonises still passes...
    _no_leftovers(sandbox)  # ...but its daemon died with it


def test_memory_bomb_fails(sandbox):
    for bomb in ("x = bytearray(8 * 1024 ** 3)", "xs = []\nwhile True:\n    xs.append(bytearray(16 * 1024 ** 2))"):
        res = sandbox.run(bomb)
        assert res.status == "failed" and "MemoryError" in res.output_tail, res.output_tail


@pytest.mark.parametrize("limits", [LIMITS, NO_HOOK], ids=["hook", "kernel-only"])
def test_writes_outside_the_temp_dir_fail_and_leave_nothing(tmp_path, limits):
    tag = uuid.uuid4().hex
    targets = [tmp_path / f"escape-{tag}", Path(f"/tmp/starflow-escape-{tag}"), Path(f"/dev/shm/starflow-escape-{tag}"),
               Path.home() / f".starflow-escape-{tag}", Path(__file__).parent / f"escape-{tag}.py"]
    with Sandbox(limits) as sb:
        results = [sb.run(f"open({str(t)!r}, 'w').write('pwned')") for t in targets]
        renamed = sb.run(f"import os\nos.rename('/etc/hostname', '/tmp/hostname-{tag}')")
    for target, res in zip(targets, results):
        assert not target.exists(), target
        private = sb.isolation["mountns"] and str(target).startswith(("/tmp/", "/dev/shm/"))
        if sb.isolation["landlock_abi"] or not private:
            assert res.status == "failed" and "Error" in res.output_tail, (target, res.output_tail)
        else:  # without Landlock, /tmp and /dev/shm are the executor's private tmpfs: written there, then gone
            assert res.status in {"passed", "failed"}
    assert renamed.status == "failed" and Path("/etc/hostname").exists()


@pytest.mark.parametrize("limits", [LIMITS, NO_HOOK], ids=["hook", "kernel-only"])
def test_no_network_not_even_loopback(limits):
    with Sandbox(limits) as sb:
        if not (sb.network_isolated or limits.audit_hook):
            pytest.skip("no network namespace or Landlock here, and the hook is off")
        server = socket.create_server(("127.0.0.1", 0))
        server.settimeout(0.5)
        port = server.getsockname()[1]
        accepted, done = [], threading.Event()
        listener = threading.Thread(target=_accept, args=(server, accepted, done))
        listener.start()
        try:
            res = sb.run(f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\ns.sendall(b'hi')")
            udp = sb.run(f"import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', {port}))")
        finally:
            done.set()
            listener.join()
            server.close()
    assert res.status == "failed" and udp.status == "failed", (res.output_tail, udp.output_tail)
    if not limits.audit_hook:  # the kernel said no, not the hook
        assert "sandbox:" not in res.output_tail and ("unreachable" in res.output_tail or "denied" in res.output_tail)
    assert accepted == []


def test_seccomp_refuses_ip_sockets_but_not_unix_ones():
    """Without the hook: creating an IP socket already fails (a network namespace alone would
    let it be created and fail at connect), so the kernel refuses network system calls."""
    with Sandbox(NO_HOOK) as sb:
        if not sb.isolation["seccomp"]:
            pytest.skip("no seccomp filter for this architecture")
        for family in ("AF_INET", "AF_INET6", "AF_PACKET", "AF_NETLINK"):
            res = sb.run(f"import socket\nsocket.socket(socket.{family}, socket.SOCK_RAW if '{family}' in ('AF_PACKET', 'AF_NETLINK') else socket.SOCK_DGRAM)")
            assert res.status == "failed" and "PermissionError" in res.output_tail, (family, res.output_tail)
        assert sb.run("import socket\nsocket.socket(socket.AF_UNIX).close()\na, b = socket.socketpair()\na.sendall(b'x')\nassert b.recv(1) == b'x'").status == "passed"


def _accept(server: socket.socket, accepted: list, done: threading.Event) -> None:
    while not done.is_set():
        try:
            accepted.append(server.accept())
        except (TimeoutError, OSError):
            pass


@pytest.mark.parametrize("limits", [LIMITS, NO_HOOK], ids=["hook", "kernel-only"])
def test_killing_the_parent_fails_and_the_run_goes_on(limits):
    if not limits.audit_hook and not KERNEL_CONTAINS_KILLS:
        pytest.skip("without a PID namespace and a sandbox uid, this would really kill the test runner")
    me = os.getpid()
    killer = (
        "import os, signal\n"
        f"for pid in ({me}, os.getppid(), {os.getppid()}):\n"
        "    try:\n"
        "        os.kill(pid, signal.SIGKILL)\n"
        "    except OSError:\n"
        "        pass\n"
        "for entry in os.listdir('/proc'):\n"  # every process this program can see
        "    if entry.isdigit() and int(entry) != os.getpid():\n"
        "        try:\n"
        "            os.kill(int(entry), signal.SIGKILL)\n"
        "        except OSError:\n"
        "            pass\n"
        "os.kill(-1, signal.SIGKILL)\n"
        "assert False, 'still here'\n"
    )
    with Sandbox(limits) as sb:
        zygote = sb._proc.pid
        res = sb.run(killer)
        assert res.status == "failed"
        assert sb.alive and sb._proc.pid == zygote  # the executor survived too, not just this process
        assert sb.run("assert True").status == "passed"
    assert os.getpid() == me


def test_stdout_flood_is_capped_and_fails_fast(sandbox):
    t0 = time.monotonic()
    res = sandbox.run("while True:\n    print('x' * 10000)")
    assert res.status == "failed" and res.reason == "output limit"
    assert len(res.output_tail) <= LIMITS.output_cap_bytes and res.output_bytes > LIMITS.max_output_bytes
    assert time.monotonic() - t0 < LIMITS.timeout_s
    # A flood that closes its own output and then spins is a timeout, not a hang of the executor.
    res = sandbox.run("import os\nos.close(1); os.close(2)\nwhile True:\n    pass")
    assert res.status == "timeout"


def test_executor_death_fails_the_sample_and_recovers():
    with Sandbox(LIMITS) as sb:
        first = sb._proc.pid
        sb._proc.kill()  # what a sandbox escape that killed the executor would look like to us
        sb._proc.wait()
        res = sb.run("assert True")
        assert res.status == "failed" and res.reason == "executor error"
        assert sb._proc.pid != first and sb.run("assert True").status == "passed"


@pytest.mark.parametrize("mode", ["warden", "off"])
def test_fallbacks_give_the_same_verdicts_and_clean_up(mode):
    """"warden": where the zygote cannot reset its PID namespace (user namespaces); "off": no PID
    namespace at all, where leftovers die because the zygote, a child subreaper, kills its children."""
    with Sandbox(LIMITS, pidns=mode) as sb:
        if mode == "warden" and sb.isolation["pidns"] != "warden":
            pytest.skip("no PID namespaces here")
        pid_one = "import os\nassert os.getpid() == 1" if mode == "warden" else "import os\nassert os.getpid() != 1"
        assert sb.run(pid_one).status == "passed"
        assert sb.run("import os\nos._exit(0)").status == "failed"
        assert sb.run("while True:\n    pass").status == "timeout"
        daemon = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
                  "        print('daemon', os.getpid(), flush=True)\n        time.sleep(60)\n    os._exit(0)\n"
                  "time.sleep(0.3)\n")
        res = sb.run(daemon)
        assert res.status == "passed"
        _no_leftovers(sb)
        if mode == "off":  # host pids: the daemon itself is gone (or a zombie about to be reaped)
            pid = int(res.output_tail.split("daemon")[1].split()[0])
            time.sleep(0.2)
            assert not Path(f"/proc/{pid}").exists() or "State:\tZ" in Path(f"/proc/{pid}/status").read_text()


@pytest.mark.slow
def test_hostile_batch_on_ray_does_not_stop_the_run(ray_session, tmp_path):
    """All hostile programs in one Ray run beside honest ones: honest pass, hostile fail."""
    from ray_tasks.evaluate.sandbox import run_local, run_programs

    escape = tmp_path / "escape"
    hostile = [
        "while True:\n    pass",
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        "x = bytearray(8 * 1024 ** 3)",
        f"open({str(escape)!r}, 'w').write('x')",
        "import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=1)",
        f"import os, signal\nos.kill({os.getpid()}, signal.SIGKILL)\nassert False",
        "import os\nos._exit(0)\nassert False",
        "while True:\n    print('y' * 10000)",
    ]
    honest = ["assert sorted([3, 1, 2]) == [1, 2, 3]"] * 4
    programs = honest[:2] + hostile + honest[2:]
    statuses = [r["status"] for r in run_programs(programs, LIMITS, 2)]
    assert statuses[:2] == ["passed"] * 2 and statuses[-2:] == ["passed"] * 2
    assert all(s != "passed" for s in statuses[2:-2]), statuses
    assert not escape.exists()
    assert [r["status"] for r in run_local(programs, LIMITS, 2)] == statuses  # the same verdicts without Ray
