"""Progress on screen: one live status line on a terminal, plain lines otherwise."""

from __future__ import annotations

import io
import os
import sys
import time
from typing import TextIO


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else \
        f"{rest // 60:02d}:{rest % 60:02d}"


def eta(done: int, max_trials: int, elapsed: float, max_seconds: float) -> float | None:
    """Seconds left: the sooner of the trial budget (at the pace so far) and the time one."""
    left = [max_seconds - elapsed]
    if done:
        left.append(elapsed / done * max(max_trials - done, 0))
    return max(min(left), 0.0)


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
        self._last_results: tuple = ()
        self._last_print = 0.0
        self._width = 0

    def update(self, *, done: int, running: int, failed: int, pool: int, frontier: int,
               best_error: float | None, elapsed: float, max_trials: int,
               max_seconds: float) -> None:
        if not self.enabled:
            return
        best = f"{best_error * 100:.2f}%" if best_error is not None else "-"
        left = eta(done, max_trials, elapsed, max_seconds)
        line = (f"trials {done} done, {running} running, {failed} failed | pool {pool}, "
                f"frontier {frontier}, best error {best} | {format_duration(elapsed)} elapsed"
                + (f", ETA {format_duration(left)}" if left is not None and done else ""))
        if self.live:
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
            self.stream.flush()
        elif (done, failed, pool, frontier, best_error) != self._last_results or \
                time.monotonic() - self._last_print > self.interval_s:
            # Off a terminal: a line when a result arrives (or now and then), not per job.
            self.stream.write(line + "\n")
            self.stream.flush()
            self._last_print = time.monotonic()
        self._last_results = (done, failed, pool, frontier, best_error)

    def close(self) -> None:
        if self.live and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0
