"""What goes to TensorBoard (events.py writes it): each trial's per-epoch curves, from
its metrics.json, and after each result the run's sizes, best error and, where the state
keeps one, its hypervolume, against cumulative compute."""

from __future__ import annotations

import json
from pathlib import Path

from petrinas.report.events import EventLog
from petrinas.report.reporter import Writer
from petrinas.report.state import ReportState


class TensorBoardWriter(Writer):
    def __init__(self, stage_dir: Path):
        self.dir = Path(stage_dir)
        self._events = EventLog(self.dir)

    def on_start(self, state: ReportState) -> None:
        self._events.close()
        self._events = EventLog(self.dir)
        for row in state.rows.values():
            self._events.count_compute(_compute(row))
            if not self._events.has_trial(str(row["trial_id"])):
                self._trial(row)   # recorded just before a kill, say

    def on_result(self, row: dict, state: ReportState) -> None:
        self._trial(row)  # a duplicate's search phase too; a failed trial has none
        summary = state.summary()
        hv = state.hv_rows[-1:]
        self._events.run_point(_compute(row), {
            "pool_size": summary["pool"], "frontier_size": summary["frontier"],
            "best_val_error": summary["best_error"],
            **({"hypervolume_val": hv[0]["hv_val"], "hypervolume_test": hv[0]["hv_test"]}
               if hv else {})})

    def on_finish(self, state: ReportState) -> None:
        self._events.close()

    def close(self) -> None:
        self._events.close()   # its SummaryWriter's thread, after Ctrl-C too

    def _trial(self, row: dict) -> None:
        trial_id = str(row["trial_id"])
        try:
            metrics = json.loads((self.dir / "trials" / trial_id / "metrics.json").read_text())
        except (OSError, ValueError):   # lost files are the store's business, not ours
            return
        self._events.trial(trial_id, metrics.get("history") or {})


def _compute(row: dict) -> float:
    return float(row.get("compute_s") or 0.0)
