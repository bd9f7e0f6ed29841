"""When a stage's figures are drawn: on a background thread, at most every
`plot_interval_s` while the stage runs, and once more, in full, at the end. What is drawn
is the stage's `draw` function (report/figures.py: search_figures, eval_figures).

However the stage ends (done, Ctrl-C, an error), `close` waits for a drawing under way,
so no thread of ours outlives the stage. The thread is not a daemon either: Python kills
a daemon thread where it stands when the interpreter exits, and one killed inside
matplotlib's FreeType aborted the process (exit 134, a C++ stack trace) instead of
Ctrl-C's exit 130; a drawing that outlasts `JOIN_TIMEOUT_S` is waited for at exit instead.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable

from petrinas.report.reporter import Writer
from petrinas.report.state import ReportState, Snapshot

log = logging.getLogger("petrinas.report")

# How long `close` waits for a drawing under way; one drawing of the search's figures
# takes about a second.
JOIN_TIMEOUT_S = 60.0


class FigureWriter(Writer):
    def __init__(self, stage_dir: Path, draw: Callable[[Path, Snapshot], None],
                 plot_interval_s: float, clock: Callable[[], float] = time.monotonic):
        """`clock`: seconds from a monotonic clock; the interval is measured on it."""
        self.dir = Path(stage_dir)
        self.draw = draw
        self.plot_interval_s = plot_interval_s
        self._clock = clock
        self._last_plot: float | None = None
        self._drawing: threading.Thread | None = None

    def on_start(self, state: ReportState) -> None:
        self._maybe_draw(state)

    def on_result(self, row: dict, state: ReportState) -> None:
        self._maybe_draw(state)

    def on_finish(self, state: ReportState) -> None:
        self.close()
        if state.pool_size:
            self._draw(state.snapshot())

    def close(self) -> None:
        if self._drawing is None:
            return
        self._drawing.join(JOIN_TIMEOUT_S)
        if self._drawing.is_alive():
            log.warning("figures still being drawn after %.0f s; the process ends when "
                        "they are written", JOIN_TIMEOUT_S)
        else:
            self._drawing = None

    def _maybe_draw(self, state: ReportState) -> None:
        """Draw on a background thread when due and no drawing is under way: a slow
        figure must not hold up the loop that keeps the cluster busy."""
        if not state.pool_size:
            return
        due = (self._last_plot is None
               or self._clock() - self._last_plot >= self.plot_interval_s)
        if not due or (self._drawing is not None and self._drawing.is_alive()):
            return
        self._last_plot = self._clock()
        self._drawing = threading.Thread(target=self._draw, args=(state.snapshot(),),
                                         name="petrinas-figures", daemon=False)
        self._drawing.start()

    def _draw(self, snapshot: Snapshot) -> None:
        try:
            self.draw(self.dir, snapshot)
        except OSError as exc:  # a full disk: the writes that matter will stop the run
            log.warning("figures not written: %s", exc)
        except Exception as exc:  # matplotlib raises many types; all mean "no figure"
            log.warning("plotting failed (the run goes on): %s: %s", type(exc).__name__, exc)
        self._last_plot = self._clock()
