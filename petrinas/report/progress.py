"""Progress on screen: one live status line on a terminal, plain lines otherwise.

    search runs/petridish_digits: 40 trials or 1:00:00, strategy petridish, 16 seed shapes
    7/40 trials, 2 running, 0 failed, 1 duplicate | pool 6, frontier 3, best val. error
    4.17% | 01:23 elapsed, ETA 02:10

The ETA is the remaining trials times the median time of the last trials, shared by the
trials that run at once: it settles as soon as a few trials have finished, instead of
swinging with each one as elapsed / done does. Off a terminal a line is printed when a
result arrives (or now and then), never per loop. What the line says is gathered by
the StatusLine writer (report/writers/status.py); this module formats and prints it.
"""

from __future__ import annotations

import io
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import TextIO

RECENT = 50  # trials the ETA's median is taken over


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else \
        f"{rest // 60:02d}:{rest % 60:02d}"


def eta(remaining: int, trial_seconds: list[float], parallel: int,
        time_left: float) -> float | None:
    """Seconds left: `remaining` trials at the median of `trial_seconds` each, `parallel`
    at a time, and never more than the time budget left. None before any trial ended."""
    if not trial_seconds:
        return None
    waves = math.ceil(max(remaining, 0) / max(parallel, 1))
    return max(min(waves * statistics.median(trial_seconds), time_left), 0.0)


@dataclass
class Status:
    done: int                  # trials that ended (trained, duplicates, failed)
    total: int | None          # trials the budget allows (None: no trial budget)
    running: int
    failed: int
    duplicates: int
    pool: int
    frontier: int
    best_error: float | None
    elapsed: float
    eta: float | None
    note: str = ""             # e.g. "waiting for capacity: ..."

    def line(self) -> str:
        total = f"/{self.total}" if self.total is not None else ""
        best = f"{self.best_error * 100:.2f}%" if self.best_error is not None else "-"
        dup = f", {self.duplicates} duplicate{'s' * (self.duplicates != 1)}" \
            if self.duplicates else ""
        left = f", ETA {format_duration(self.eta)}" if self.eta is not None else ""
        return (f"{self.done}{total} trials, {self.running} running, {self.failed} failed"
                f"{dup} | pool {self.pool}, frontier {self.frontier}, best val. error {best} "
                f"| {format_duration(self.elapsed)} elapsed{left}"
                + (f" | {self.note}" if self.note else ""))


def terminal() -> TextIO:
    """A stream on a duplicate of the current stderr descriptor, so that progress still
    reaches the terminal while Ray's output is redirected away from descriptor 2 (see
    jobs.py). Where sys.stderr has no descriptor (a notebook, a test), sys.stderr."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return sys.stderr
    return os.fdopen(os.dup(fd), "w", buffering=1)


class Progress:
    def __init__(self, enabled: bool = True, stream: TextIO | None = None,
                 interval_s: float = 30.0):
        self.stream = stream or (terminal() if enabled else sys.stderr)
        self.enabled = enabled
        self.live = enabled and self.stream.isatty()
        self.interval_s = interval_s
        self._last: tuple = ()
        self._last_print = 0.0
        self._width = 0

    def header(self, text: str) -> None:
        """The first line: what runs, where, and its budget."""
        if self.enabled:
            self.stream.write(text + "\n")
            self.stream.flush()

    def warn(self, text: str) -> None:
        """A warning the user must see, --quiet or not."""
        self.close()
        self.stream.write(f"warning: {text}\n")
        self.stream.flush()

    def update(self, status: Status) -> None:
        if not self.enabled:
            return
        line = status.line()
        key = (status.done, status.failed, status.pool, status.note)
        if self.live:
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
            self.stream.flush()
        elif key != self._last or time.monotonic() - self._last_print > self.interval_s:
            self.stream.write(line + "\n")
            self.stream.flush()
            self._last_print = time.monotonic()
        self._last = key

    def close(self) -> None:
        if self.live and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0
