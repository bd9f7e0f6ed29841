"""FigureWriter with the search's real figures: the files appear once there are models,
are drawn again when the interval has passed (never more often), and once more at the
end; a figure that fails to draw does not stop the stage."""

from __future__ import annotations

import logging
from pathlib import Path

from petrinas.report import figures
from petrinas.report.hypervolume_log import HypervolumeLog
from petrinas.report.state import ReportState
from petrinas.report.writers import FigureWriter
from support import ManualClock
from test_report import _example_rows, _failed

FILES = [f"{name}.{ext}" for name in ("frontier", "hypervolume", "pool", "seeds")
         for ext in ("pdf", "png")]


class Counted:
    """The search's figures, drawn for real, and counted."""

    def __init__(self):
        self.draw = figures.search_figures(0.1)
        self.calls = 0

    def __call__(self, folder: Path, snapshot) -> None:
        self.calls += 1
        self.draw(folder, snapshot)


def _drawn(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def _settle(writer: FigureWriter) -> None:
    """Wait for the drawing under way, if any (it runs on its own thread): however long
    it takes (pytest's timeout is the guard against a hang)."""
    if writer._drawing is not None:
        writer._drawing.join()


def _state(rows) -> ReportState:
    state = ReportState(0.1, hypervolume=HypervolumeLog((1e9, 0.8)))
    for row in rows:
        state.ingest(row)
    return state


def test_figures_are_drawn_at_start_not_within_the_interval_and_at_the_end(tmp_path):
    """Fails if a result within the interval redraws, or the end does not. The interval
    is measured on a clock that does not move here."""
    rows = _example_rows()
    state, draw = _state(rows[:2]), Counted()
    writer = FigureWriter(tmp_path, draw, plot_interval_s=3600, clock=ManualClock())
    writer.on_start(state)
    _settle(writer)
    assert sorted(_drawn(tmp_path)) == FILES and draw.calls == 1
    first = _drawn(tmp_path)
    for row in rows[2:]:
        state.ingest(row)
        writer.on_result(row, state)
        _settle(writer)
    assert draw.calls == 1 and _drawn(tmp_path) == first       # within the interval
    writer.on_finish(state)
    assert draw.calls == 2
    assert all(_drawn(tmp_path)[name] > first[name] for name in FILES)


def test_figures_are_rewritten_once_the_interval_has_passed(tmp_path: Path):
    """Fails if a result is not redrawn once the interval has passed on the writer's
    clock (or is redrawn before): the clock is the test's, moved by hand."""
    rows = _example_rows()
    state, draw = _state(rows[:2]), Counted()
    clock = ManualClock()
    writer = FigureWriter(tmp_path, draw, plot_interval_s=2.0, clock=clock)
    writer.on_start(state)
    _settle(writer)
    first = _drawn(tmp_path)
    clock.advance(1.0)
    state.ingest(rows[2])
    writer.on_result(rows[2], state)
    _settle(writer)
    assert draw.calls == 1                          # 1 s of 2: not yet
    clock.advance(1.0)
    state.ingest(rows[3])
    writer.on_result(rows[3], state)
    _settle(writer)
    assert draw.calls == 2
    assert all(_drawn(tmp_path)[name] > first[name] for name in FILES)


def test_no_model_no_figure(tmp_path: Path):
    state, draw = _state([_failed("t0000")]), Counted()
    writer = FigureWriter(tmp_path, draw, plot_interval_s=0)
    writer.on_start(state)
    writer.on_finish(state)
    assert draw.calls == 0 and not list(tmp_path.iterdir())


def test_a_failing_figure_is_a_warning(tmp_path: Path, caplog):
    def broken(folder: Path, snapshot) -> None:
        raise ValueError("no such colour")

    state = _state(_example_rows())
    writer = FigureWriter(tmp_path, broken, plot_interval_s=3600)
    with caplog.at_level(logging.WARNING, logger="petrinas.report"):
        writer.on_finish(state)
    assert "plotting failed (the run goes on): ValueError: no such colour" in caplog.text
