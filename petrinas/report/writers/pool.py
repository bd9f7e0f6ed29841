"""pool.tsv: every trial of the stage, one line per result."""

from __future__ import annotations

from pathlib import Path

from petrinas.report.reporter import Writer
from petrinas.report.state import ReportState
from petrinas.report.tsv import append_tsv, write_tsv


class PoolTable(Writer):
    """Sorted by trial id when written in full (the start and the end); while the stage
    runs, each result is appended, so a result costs one line, not the whole table."""

    def __init__(self, stage_dir: Path):
        self.path = Path(stage_dir) / "pool.tsv"

    def on_start(self, state: ReportState) -> None:
        write_tsv(self.path, state.sorted_rows())

    def on_result(self, row: dict, state: ReportState) -> None:
        append_tsv(self.path, [row])

    def on_finish(self, state: ReportState) -> None:
        write_tsv(self.path, state.sorted_rows())
