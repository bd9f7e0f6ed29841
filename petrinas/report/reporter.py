"""What a run shows while it goes: a `Reporter` feeds the stage's rows into one
`ReportState` and hands each change to the stage's writers, in their order.

The search and the eval stage each assemble their own writers (runner.py's
`search_reporter`, evaluate.py's `eval_reporter`); a writer does one thing (a table, the
gallery folders, the figures, TensorBoard, the status line) and the reporter decides
nothing. Rows (plain dicts, search/rows.py) arrive all at once at `start` (a new or
resumed run), then one by one (`add`), and `finish` comes at the end; `close` comes
last, however the stage ended. While the trial loop runs, it also says at each turn what
only it knows (`tick`, a `LoopStatus`), and when it ends (`loop_end`). Every file is
written atomically or appended line by line; see each writer for its files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from petrinas.report.state import ReportState


@dataclass(frozen=True)
class LoopStatus:
    """What the trial loop is doing, which no row says."""
    running: int        # jobs running now
    waiting: str        # why no job can start (the cluster's capacity), or ""
    draining: str       # the budget reached, while the running jobs finish, or ""
    elapsed: float      # driver seconds spent on the run, over every session
    time_left: float    # seconds the time budget has left (inf: none)


class Writer:
    """One kind of output of a stage. Each hook gets the state after the row(s) it
    announces were taken in; the defaults do nothing."""

    def on_start(self, state: ReportState) -> None:
        """Every row so far is in `state` (a new or resumed run): write in full."""

    def on_result(self, row: dict, state: ReportState) -> None:
        """`row` just arrived: bring the output up to date."""

    def on_tick(self, loop: LoopStatus, state: ReportState) -> None:
        """A turn of the trial loop, after it refilled the free slots."""

    def on_loop_end(self) -> None:
        """The trial loop ended, however (done, stopped, Ctrl-C, an error)."""

    def on_finish(self, state: ReportState) -> None:
        """The stage is over: write the final state in full and release what is held."""

    def close(self) -> None:
        """The stage ended, however (after on_finish, or without it: Ctrl-C, an error):
        stop or wait for what runs in the background. Called more than once, it does
        nothing more."""


class Reporter:
    def __init__(self, state: ReportState, writers: Sequence[Writer]):
        self.state = state
        self.writers = list(writers)

    def start(self, rows: Iterable[dict]) -> dict:
        """Every row so far, in the order they were recorded: rewrite everything."""
        self.state.reset()
        for row in rows:
            self.state.ingest(row)
        for writer in self.writers:
            writer.on_start(self.state)
        return self.state.summary()

    def add(self, row: dict) -> dict:
        """One new result."""
        self.state.ingest(row)
        for writer in self.writers:
            writer.on_result(row, self.state)
        return self.state.summary()

    def tick(self, loop: LoopStatus) -> None:
        for writer in self.writers:
            writer.on_tick(loop, self.state)

    def loop_end(self) -> None:
        for writer in self.writers:
            writer.on_loop_end()

    def finish(self) -> dict:
        """The final state, written in full."""
        for writer in self.writers:
            writer.on_finish(self.state)
        return self.state.summary()

    def close(self) -> None:
        """Every writer's `close`, however the stage ended (`with closing(reporter)`)."""
        for writer in self.writers:
            writer.close()
