"""TensorBoardWriter, read back with TensorBoard's own reader: each trial's curves from
its metrics.json, and the run's figures after each result against cumulative compute."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from petrinas.report.hypervolume_log import HypervolumeLog
from petrinas.report.state import ReportState
from petrinas.report.writers import TensorBoardWriter
from support import read_events
from test_report import _example_rows

TAGS = ("train_loss", "val_loss", "train_top1", "val_top1", "lr")


def _curves(run_dir: Path, trial_id: str, phases: dict[str, int]) -> dict:
    """Write a metrics.json with `phases` (phase -> epochs); returns the expected events."""
    history = {phase: {"history": [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 2.0 / e,
                                    "train_top1": 0.1 * e, "val_top1": 0.05 * e, "lr": 0.5}
                                   for e in range(1, epochs + 1)]}
               for phase, epochs in phases.items()}
    folder = run_dir / "trials" / trial_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps({"trial_id": trial_id,
                                                     "history": history}))
    return {f"{phase}/{tag}": [(e["epoch"], pytest.approx(e[tag])) for e in record["history"]]
            for phase, record in history.items() for tag in TAGS}


def test_each_trials_curves_and_the_run_against_compute(tmp_path: Path):
    rows = {r["trial_id"]: r for r in _example_rows()}
    expected = {"t0000": _curves(tmp_path, "t0000", {"seed_train": 2}),
                "t0003": _curves(tmp_path, "t0003", {"search_train": 1, "post_train": 2})}
    _curves(tmp_path, "t0001", {"seed_train": 2})
    board = tmp_path / "tensorboard"
    (board / "t0001").mkdir(parents=True)     # written before a restart: not again
    state = ReportState(0.1, hypervolume=HypervolumeLog((1e9, 0.8)))
    for trial_id in ("t0000", "t0001"):       # A, B: 1.5 device seconds each
        state.ingest(rows[trial_id])
    writer = TensorBoardWriter(tmp_path)
    writer.on_start(state)
    hv = []
    for trial_id in ("t0003", "t0006"):       # D (1.5 s), F failed (0.5 s, no metrics)
        state.ingest(rows[trial_id])
        writer.on_result(rows[trial_id], state)
        hv.append(state.hv_rows[-1])
    writer.on_finish(state)

    assert sorted(p.name for p in board.iterdir()) == ["run", "t0000", "t0001", "t0003"]
    assert read_events(board / "t0000") == expected["t0000"]
    assert read_events(board / "t0003") == expected["t0003"]
    assert not list((board / "t0001").iterdir())
    run = read_events(board / "run")
    # Steps: the compute of every result so far, the resumed ones included:
    # 3 + 1.5 = 4.5 -> 4 (round half to even), then 5.
    assert run == {"run/pool_size": [(4, 3.0), (5, 3.0)],
                   "run/frontier_size": [(4, 3.0), (5, 3.0)],
                   "run/best_val_error": [(4, pytest.approx(0.1)), (5, pytest.approx(0.1))],
                   "run/hypervolume_val": [(4, pytest.approx(hv[0]["hv_val"])),
                                           (5, pytest.approx(hv[1]["hv_val"]))],
                   "run/hypervolume_test": [(4, pytest.approx(hv[0]["hv_test"])),
                                            (5, pytest.approx(hv[1]["hv_test"]))]}
    assert hv[0]["hv_val"] > 0.5 and hv[0]["hv_test"] > 0.49   # D adds to A and B's area


def test_a_stage_without_hypervolume_has_no_hypervolume_curves(tmp_path: Path):
    rows = _example_rows()
    state = ReportState(0.1)
    writer = TensorBoardWriter(tmp_path)
    writer.on_start(state)
    for row in rows[:2]:
        state.ingest(row)
        writer.on_result(row, state)
    writer.on_finish(state)
    run = read_events(tmp_path / "tensorboard" / "run")
    assert set(run) == {"run/pool_size", "run/frontier_size", "run/best_val_error"}
    assert run["run/pool_size"] == [(2, 1.0), (3, 2.0)]
