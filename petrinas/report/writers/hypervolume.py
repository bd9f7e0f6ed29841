"""hypervolume.tsv: the state's hypervolume log, one line per result."""

from __future__ import annotations

from pathlib import Path

from petrinas.report.hypervolume_log import HV_COLUMNS
from petrinas.report.reporter import Writer
from petrinas.report.state import ReportState
from petrinas.report.tsv import append_tsv, write_tsv


class HypervolumeTable(Writer):
    """Needs a state that keeps a `HypervolumeLog`. Unlike pool.tsv it is not rewritten
    at the end: its rows are in arrival order, which is what they measure."""

    def __init__(self, stage_dir: Path):
        self.path = Path(stage_dir) / "hypervolume.tsv"

    def on_start(self, state: ReportState) -> None:
        write_tsv(self.path, state.hv_rows, HV_COLUMNS)

    def on_result(self, row: dict, state: ReportState) -> None:
        append_tsv(self.path, state.hv_rows[-1:], HV_COLUMNS)
