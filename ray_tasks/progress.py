"""Progress of a long stage that a person can follow in any log: files, bytes and repositories
done of the total, a rate and an ETA.

    with Progress("ingest", files=n, bytes=b, repos=r, hook=publish) as progress:
        for part in results:
            progress.advance(files=..., bytes=..., repos=...)

On a terminal it is a rich progress bar; otherwise (a log file, a Prefect worker, CI) one log
line every ``log_every_s`` seconds and one at the end, since a bar redrawn with carriage
returns is unreadable in a log; ``logger`` is where the lines go (a flow passes its run
logger, so they reach the Prefect UI). ``hook`` receives a ``Snapshot`` at most every ``hook_every_s``
seconds and at the end: the flow passes one that updates a Prefect progress artifact, because
``ray_tasks`` must not import Prefect. The ETA assumes the rest goes at the average rate so
far, measured on bytes when the total is known in bytes, else on files.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Callable

from rich.console import Console

log = logging.getLogger(__name__)

LOG_EVERY_S = 10.0
HOOK_EVERY_S = 2.0


@dataclass(frozen=True)
class Snapshot:
    stage: str
    files: int
    files_total: int
    bytes: int
    bytes_total: int
    repos: int
    repos_total: int
    elapsed_s: float
    files_per_s: float
    bytes_per_s: float
    eta_s: float | None
    """Seconds left at the average rate so far; None before anything is done."""

    @property
    def fraction(self) -> float:
        """Done, from 0 to 1 (by bytes when their total is known, else by files)."""
        if self.bytes_total:
            return min(self.bytes / self.bytes_total, 1.0)
        return min(self.files / self.files_total, 1.0) if self.files_total else 1.0

    def line(self) -> str:
        """``ingest: 512/1,459 files, 8.1/17.7 MB, 7/18 repositories (46%), 3.2 MB/s, ETA 3s``."""
        eta = "" if self.eta_s is None else f", ETA {_duration(self.eta_s)}"
        return (f"{self.stage}: {self.files:,}/{self.files_total:,} files, {_mb(self.bytes)}/{_mb(self.bytes_total)} MB, "
                f"{self.repos:,}/{self.repos_total:,} repositories ({self.fraction:.0%}), "
                f"{self.bytes_per_s / 1e6:.1f} MB/s, {self.files_per_s:.0f} files/s{eta}")

    def as_dict(self) -> dict:
        return {**asdict(self), "fraction": self.fraction}


class Progress:
    """Counts of work done against totals known up front (a listing), shown as it advances."""

    def __init__(self, stage: str, files: int = 0, bytes: int = 0, repos: int = 0,
                 hook: Callable[[Snapshot], None] | None = None, console: Console | None = None,
                 log_every_s: float = LOG_EVERY_S, hook_every_s: float = HOOK_EVERY_S,
                 logger: logging.Logger | logging.LoggerAdapter | None = None):
        self.stage, self.totals = stage, (files, bytes, repos)
        self.log = logger or log
        self.done = [0, 0, 0]
        self.hook, self.log_every_s, self.hook_every_s = hook, log_every_s, hook_every_s
        self.console = console or Console(stderr=True)
        self._bar = None
        self._logged: tuple[int, ...] | None = None
        self._start = self._last_log = self._last_hook = time.monotonic()

    def __enter__(self) -> "Progress":
        self._start = self._last_log = self._last_hook = time.monotonic()
        if self.console.is_terminal:
            from rich.progress import BarColumn, Progress as Bar, TextColumn, TimeRemainingColumn

            self._bar = Bar(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[counts]}"),
                            TimeRemainingColumn(), console=self.console, transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.stage, total=self._total_units(), counts="")
        self._publish()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
        if exc[0] is None:
            if tuple(self.done) != self._logged:  # the last periodic line may already say it
                self.log.info("%s", self.snapshot().line())
            self._publish()

    def advance(self, files: int = 0, bytes: int = 0, repos: int = 0) -> None:
        for i, n in enumerate((files, bytes, repos)):
            self.done[i] += n
        now = time.monotonic()
        if self._bar is not None:
            snap = self.snapshot()
            self._bar.update(self._task, completed=self._done_units(),
                             counts=f"{snap.files:,}/{snap.files_total:,} files {snap.repos:,}/{snap.repos_total:,} repos")
        elif now - self._last_log >= self.log_every_s:
            self._last_log, self._logged = now, tuple(self.done)
            self.log.info("%s", self.snapshot().line())
        if now - self._last_hook >= self.hook_every_s:
            self._publish()

    def snapshot(self) -> Snapshot:
        elapsed = max(time.monotonic() - self._start, 1e-9)
        (files, bytes_, repos), (files_total, bytes_total, repos_total) = self.done, self.totals
        done, total = self._done_units(), self._total_units()
        eta = (total - done) * elapsed / done if done else None
        return Snapshot(self.stage, files, files_total, bytes_, bytes_total, repos, repos_total, elapsed,
                        files / elapsed, bytes_ / elapsed, None if eta is None else max(eta, 0.0))

    def _total_units(self) -> int:
        return self.totals[1] or self.totals[0]

    def _done_units(self) -> int:
        return self.done[1] if self.totals[1] else self.done[0]

    def _publish(self) -> None:
        if self.hook is None:
            return
        self._last_hook = time.monotonic()
        try:
            self.hook(self.snapshot())
        except Exception as exc:  # progress must never fail the work it reports on
            self.log.warning("progress hook failed: %s", exc)


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f}"


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"
