"""The status line (progress.py prints it): the stage's counts from the state, what the
loop is doing from its ticks, and the ETA from the compute of the trials seen to end."""

from __future__ import annotations

from collections import deque
from typing import Callable

from petrinas.report.progress import RECENT, Progress, Status, eta
from petrinas.report.reporter import LoopStatus, Writer
from petrinas.report.state import ReportState
from petrinas.search.rows import FAILED


class StatusLine(Writer):
    """Shown at each tick of the loop, after its refill (see runner.py). `total` gives
    the trials the stage will have run when it is done (None: no trial budget); it is
    asked at the start, after the journal's replay, since the eval's depends on the
    models already trained."""

    def __init__(self, progress: Progress, total: Callable[[], int | None]):
        self.progress = progress
        self._total = total
        self.total: int | None = None
        self.trial_seconds: deque[float] = deque(maxlen=RECENT)
        self._ticked = False

    def on_start(self, state: ReportState) -> None:
        self.total = self._total()
        self.trial_seconds.clear()
        self._ticked = False

    def on_result(self, row: dict, state: ReportState) -> None:
        # The ETA is paced by the trials this session ran: rows from before (the
        # history at the start, a result adopted at resume, which arrives before the
        # loop's first tick) may come from another cluster. A failed trial's compute is
        # no trial's length.
        if self._ticked and row.get("status") != FAILED:
            self.trial_seconds.append(float(row["compute_s"]))

    def on_tick(self, loop: LoopStatus, state: ReportState) -> None:
        self._ticked = True
        summary, done = state.summary(), len(state.rows)
        remaining = None if self.total is None else self.total - done
        note = loop.waiting or (f"draining ({loop.draining} reached)" if loop.draining
                                else "")
        self.progress.update(Status(
            done=done, total=self.total, running=loop.running, failed=summary["failed"],
            duplicates=summary["duplicates"], pool=summary["pool"],
            frontier=summary["frontier"], best_error=summary["best_error"],
            elapsed=loop.elapsed, note=note,
            eta=eta(remaining, list(self.trial_seconds), max(loop.running, 1),
                    loop.time_left) if remaining is not None else None))

    def on_loop_end(self) -> None:
        self.progress.close()   # the next line printed starts a line of its own

    def on_finish(self, state: ReportState) -> None:
        self.progress.close()
