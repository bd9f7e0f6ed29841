"""What a run shows while it goes: a `Reporter` feeds the stage's rows into one
`ReportState` and hands each change to the stage's writers, in their order.

The search and the eval stage each assemble their own writers (runner.py's
`search_reporter`, evaluate.py's `eval_reporter`); a writer does one thing (a table,
the gallery folders, the figures, TensorBoard) and the reporter decides nothing. Rows
(plain dicts, search/rows.py) arrive all at once at `start` (a new or resumed run), then
one by one (`add`), and `finish` comes at the end. Every file is written atomically or
appended line by line; see each writer for its files.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from petrinas.report.state import ReportState


class Writer:
    """One kind of output of a stage. Each hook gets the state after the row(s) it
    announces were taken in; the defaults do nothing."""

    def on_start(self, state: ReportState) -> None:
        """Every row so far is in `state` (a new or resumed run): write in full."""

    def on_result(self, row: dict, state: ReportState) -> None:
        """`row` just arrived: bring the output up to date."""

    def on_finish(self, state: ReportState) -> None:
        """The stage is over: write the final state in full and release what is held."""


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

    def finish(self) -> dict:
        """The final state, written in full."""
        for writer in self.writers:
            writer.on_finish(self.state)
        return self.state.summary()

    def summary(self) -> dict:
        """Counts for the status line."""
        return self.state.summary()
