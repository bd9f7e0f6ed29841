"""The frontier's tables: frontier.tsv / frontier_eps.tsv (the rows on the lower convex
hull of (cost, validation error) and in its ε-band) and frontier.md / frontier.tex."""

from __future__ import annotations

from pathlib import Path

from petrinas.fileio import write_text_atomic
from petrinas.report.reporter import Writer
from petrinas.report.state import ReportState
from petrinas.report.tsv import tsv_line
from petrinas.search.rows import COLUMNS
from petrinas.tables import write_frontier_tables


class FrontierWriter(Writer):
    """A writer of what follows the hull and band: written in full at the start and the
    end (`full`), and after a result only when that result moved them."""

    def write(self, state: ReportState, full: bool) -> None:
        raise NotImplementedError

    def on_start(self, state: ReportState) -> None:
        self.write(state, full=True)

    def on_result(self, row: dict, state: ReportState) -> None:
        if state.frontier_changed:
            self.write(state, full=False)

    def on_finish(self, state: ReportState) -> None:
        self.write(state, full=True)


class FrontierTables(FrontierWriter):
    """frontier.tsv (the hull) and frontier_eps.tsv (the band), each rewritten atomically."""

    def __init__(self, stage_dir: Path):
        self.dir = Path(stage_dir)
        self._lines: dict[str, tuple[dict, str]] = {}   # trial id -> (row, its line)

    def write(self, state: ReportState, full: bool) -> None:
        header = "\t".join(COLUMNS)
        for name, ids in (("frontier.tsv", state.hull), ("frontier_eps.tsv", state.band)):
            lines = [self._line(state.rows[t]) for t in ids]
            write_text_atomic(self.dir / name, "\n".join([header, *lines]) + "\n")

    def _line(self, row: dict) -> str:
        """A row's line is formatted once: a recorded row never changes (a trial recorded
        again comes as a new row, which replaces the cached line)."""
        cached = self._lines.get(row["trial_id"])
        if cached is None or cached[0] is not row:
            cached = self._lines[row["trial_id"]] = (row, tsv_line(row))
        return cached[1]


class FrontierDocuments(FrontierWriter):
    """frontier.md and frontier.tex of the hull's rows (the eval stage's, for a paper)."""

    def __init__(self, stage_dir: Path, cost_key: str = "macs"):
        self.dir = Path(stage_dir)
        self.cost_key = cost_key

    def write(self, state: ReportState, full: bool) -> None:
        write_frontier_tables(self.dir, state.hull_rows(), cost_key=self.cost_key)
