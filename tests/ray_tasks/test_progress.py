import io
import logging

from rich.console import Console

from ray_tasks.progress import Progress


def test_log_lines_count_files_bytes_repositories_with_rate_and_eta(caplog):
    snapshots = []
    console = Console(file=io.StringIO())  # not a terminal: log lines, no bar
    with caplog.at_level(logging.INFO, logger="ray_tasks.progress"):
        with Progress("ingest", files=10, bytes=4_000_000, repos=4, hook=snapshots.append, console=console,
                      log_every_s=0, hook_every_s=0) as progress:
            progress.advance(files=5, bytes=1_000_000, repos=1)
            half = progress.snapshot()
            progress.advance(files=5, bytes=3_000_000, repos=3)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("ingest: 5/10 files, 1.0/4.0 MB, 1/4 repositories (25%)") and "ETA" in lines[0]
    assert lines[-1].startswith("ingest: 10/10 files, 4.0/4.0 MB, 4/4 repositories (100%)")
    assert half.fraction == 0.25 and half.eta_s is not None and half.eta_s > 0 and half.bytes_per_s > 0
    # The hook saw the start, every advance and the end; the last says everything is done.
    assert [s.files for s in snapshots] == [0, 5, 10, 10] and snapshots[-1].fraction == 1.0
    assert snapshots[-1].as_dict()["repos_total"] == 4 and snapshots[0].eta_s is None
    assert console.file.getvalue() == ""


def test_a_terminal_gets_a_bar_and_a_failing_hook_does_not_stop_the_work(caplog):
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)

    def broken(snapshot):
        raise RuntimeError("server gone")

    with caplog.at_level(logging.WARNING, logger="ray_tasks.progress"):
        with Progress("dedup", files=3, hook=broken, console=console, hook_every_s=0) as progress:
            for _ in range(3):
                progress.advance(files=1)
    assert "dedup" in out.getvalue() and "3/3 files" in out.getvalue()
    assert progress.snapshot().fraction == 1.0  # measured on files when bytes are unknown
    assert any("progress hook failed: server gone" in r.getMessage() for r in caplog.records)


def test_hook_calls_are_throttled():
    calls = []
    with Progress("ingest", files=1000, hook=calls.append, console=Console(file=io.StringIO()),
                  hook_every_s=3600) as progress:
        for _ in range(1000):
            progress.advance(files=1)
    assert len(calls) == 2  # the start and the end, not one per advance
