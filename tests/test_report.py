"""Tests for petrinas.search.report: tables, frontier ids, plots, gallery, throttling."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from petrinas.search.report import (
    POOL_COLUMNS,
    Reporter,
    frontier_ids,
    plot_frontier,
    plot_pool,
    plot_seeds,
    sync_gallery,
    write_tsv,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _row(trial_id: str, macs: int, val: float, *, stage: str = "search",
         test: float | None = None, **extra) -> dict:
    row = dict(trial_id=trial_id, parent_id="" if stage == "seed" else "t0000", stage=stage,
               cells=3, reductions=2, nodes=4, macs=macs, params=macs // 10,
               val_top1=val, test_top1=test, train_top1=0.99, epochs=2, wall_s=1.5,
               device="cpu", status="ok", error="", elapsed_s=3.0)
    row.update(extra)
    return row


def _failed(trial_id: str, error: str = "CUDA OOM") -> dict:
    return dict(trial_id=trial_id, parent_id="t0000", stage="search", status="failed",
                error=error, elapsed_s=4.0)


# Hand-checked pool (macs, error = 1 - val):
#   A (100e6, .30)  B (200e6, .20)  C (300e6, .18)  D (400e6, .10)  E (500e6, .11)
#   G (150e6, .30)  F failed
# Slopes A->B -1e-9, B->C -2e-10, C->D -8e-10: C is not convex, so the hull is A, B, D.
# Hull error at C's cost is .15 and 1.1 * .15 = .165 < .18: C is out of the 10 % band;
# G: 1.1 * .25 = .275 < .30, out; E is right of D, where the hull is flat at .10, and
# .11 <= 1.1 * .10: in. The band is A, B, D, E.
def _example_rows() -> list[dict]:
    return [
        _row("t0003", 400_000_000, 0.90),            # D
        _row("t0000", 100_000_000, 0.70, stage="seed"),  # A
        _failed("t0006"),                            # F
        _row("t0002", 300_000_000, 0.82),            # C
        _row("t0004", 500_000_000, 0.89),            # E
        _row("t0001", 200_000_000, 0.80, stage="seed"),  # B
        _row("t0005", 150_000_000, 0.70),            # G
    ]


# ------------------------------------------------------------------------- tables

def test_frontier_ids_hand_checked_example():
    hull_ids, band_ids = frontier_ids(_example_rows(), 0.1)
    assert hull_ids == ["t0000", "t0001", "t0003"]
    assert band_ids == ["t0000", "t0001", "t0003", "t0004"]
    # eps = 0: the hull line only; E (.11) is above the flat extension (.10).
    assert frontier_ids(_example_rows(), 0.0) == (hull_ids, hull_ids)


def test_frontier_ids_other_metric_skips_rows_without_it():
    rows = [_row("a", 100, 0.7, test=0.65), _row("b", 200, 0.8, test=None),
            _row("c", 300, 0.9, test=0.85)]
    assert frontier_ids(rows, 0.0, metric="test_top1") == (["a", "c"], ["a", "c"])


def test_frontier_ids_empty_and_failed_only():
    assert frontier_ids([], 0.1) == ([], [])
    assert frontier_ids([_failed("t0000")], 0.1) == ([], [])


def test_write_tsv_header_rows_and_formatting(tmp_path: Path):
    rows = _example_rows() + [_failed("t0007", "line one\nline\ttwo")]
    rows[0]["val_top1"] = 0.123456789
    path = tmp_path / "pool.tsv"
    write_tsv(path, rows)
    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == list(POOL_COLUMNS)
    assert len(lines) == 1 + len(rows)
    cells = [dict(zip(POOL_COLUMNS, line.split("\t"))) for line in lines[1:]]
    assert all(len(line.split("\t")) == len(POOL_COLUMNS) for line in lines)
    assert cells[0]["val_top1"] == "0.123457"          # 6 significant digits
    assert cells[0]["test_top1"] == ""                  # None
    assert cells[0]["macs"] == "400000000"              # ints are not rounded
    failed = [c for c in cells if c["status"] == "failed"]
    assert [c["trial_id"] for c in failed] == ["t0006", "t0007"]
    assert failed[0]["val_top1"] == "" and failed[0]["macs"] == ""
    assert failed[1]["error"] == "line one line two"
    assert not list(tmp_path.glob(".*"))                # no temp file left behind


# -------------------------------------------------------------------------- plots

def _assert_figure(stem: Path) -> None:
    png, pdf = stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".pdf")
    assert png.read_bytes().startswith(PNG_SIGNATURE)
    assert pdf.read_bytes().startswith(b"%PDF")


def test_plots_write_valid_png_and_pdf(tmp_path: Path):
    rows = _example_rows()
    plot_frontier(tmp_path / "frontier", rows, 0.1, title="pool")
    plot_pool(tmp_path / "pool", rows)
    plot_seeds(tmp_path / "seeds", rows)
    for stem in ("frontier", "pool", "seeds"):
        _assert_figure(tmp_path / stem)


def test_plot_frontier_eval_with_reference_and_log_axis(tmp_path: Path):
    # Test metric on eval rows, reference rows without test accuracy (val fallback),
    # and a MACs span > 20x (log axis).
    evals = [_row(f"e{i}", m, 0.8, stage="eval", test=t)
             for i, (m, t) in enumerate([(1_000_000, 0.6), (10_000_000, 0.75),
                                         (100_000_000, 0.9)])]
    plot_frontier(tmp_path / "eval", evals, 0.0, metric="test_top1",
                  reference_rows=_example_rows(), title="eval")
    _assert_figure(tmp_path / "eval")


def test_plot_frontier_with_no_points(tmp_path: Path):
    plot_frontier(tmp_path / "empty", [_failed("t0000")], 0.1)
    _assert_figure(tmp_path / "empty")


# ------------------------------------------------------------------------ gallery

def _fake_trial(run_dir: Path, trial_id: str, *, weights: bytes = b"w",
                metrics: bool = True) -> None:
    folder = run_dir / "trials" / trial_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "desc.yaml").write_text(f"name: {trial_id}\n")
    (folder / "weights.pt").write_bytes(weights + trial_id.encode())
    if metrics:
        (folder / "metrics.json").write_text(json.dumps({"trial_id": trial_id, "x": 1}))


def _no_hidden(gallery: Path) -> bool:
    return not [p for p in gallery.iterdir() if p.name.startswith(".")]


def test_sync_gallery_copies_refreshes_and_prunes(tmp_path: Path):
    for t in ("t0000", "t0001", "t0002"):
        _fake_trial(tmp_path, t, metrics=t != "t0002")
    rows = {t: _row(t, 100, 0.5) for t in ("t0000", "t0001", "t0002")}
    gallery = tmp_path / "gallery"

    names = sync_gallery(tmp_path, ["t0000", "t0001", "t0002"], rows)
    assert names == ["t0000", "t0001", "t0002"]
    for t in names:
        assert sorted(p.name for p in (gallery / t).iterdir()) == [
            "desc.yaml", "metrics.json", "weights.pt"]
        assert (gallery / t / "weights.pt").read_bytes() == b"w" + t.encode()
    assert json.loads((gallery / "t0000" / "metrics.json").read_text())["x"] == 1
    # No metrics.json in the trial: the row stands in for it.
    assert json.loads((gallery / "t0002" / "metrics.json").read_text()) == rows["t0002"]
    assert _no_hidden(gallery)

    # Unchanged members are left alone (same folder, not rebuilt); a changed one is.
    inode0 = (gallery / "t0000").stat().st_ino
    weights1 = tmp_path / "trials" / "t0001" / "weights.pt"
    weights1.write_bytes(b"retrained-and-longer")
    names = sync_gallery(tmp_path, ["t0000", "t0001"], rows)
    assert names == ["t0000", "t0001"]
    assert (gallery / "t0000").stat().st_ino == inode0
    assert (gallery / "t0001" / "weights.pt").read_bytes() == b"retrained-and-longer"
    # t0002 left the band: removed.
    assert sorted(p.name for p in gallery.iterdir()) == ["t0000", "t0001"]
    assert _no_hidden(gallery)


def test_sync_gallery_cleans_interrupted_install_and_skips_missing(tmp_path: Path):
    _fake_trial(tmp_path, "t0000")
    gallery = tmp_path / "gallery"
    (gallery / ".t0000.tmp").mkdir(parents=True)
    (gallery / ".t0000.tmp" / "weights.pt").write_bytes(b"half")
    # t0009 has no trial folder: it cannot be copied and is not listed.
    names = sync_gallery(tmp_path, ["t0000", "t0009"], {})
    assert names == ["t0000"]
    assert sorted(p.name for p in gallery.iterdir()) == ["t0000"]


# ----------------------------------------------------------------------- reporter

def _trial_folders(run_dir: Path, rows: list[dict]) -> None:
    for r in rows:
        if r["status"] == "ok":
            _fake_trial(run_dir, r["trial_id"])


def test_reporter_refresh_writes_tables_gallery_and_summary(tmp_path: Path):
    rows = _example_rows()
    _trial_folders(tmp_path, rows)
    summary = Reporter(tmp_path, 0.1, plot_interval_s=3600).refresh(rows)
    assert summary == {"pool": 6, "failed": 1, "frontier": 3, "band": 4,
                       "best_error": pytest.approx(0.10)}
    pool = (tmp_path / "pool.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in pool[1:]] == [f"t{i:04d}" for i in range(7)]
    assert pool[7].split("\t")[POOL_COLUMNS.index("status")] == "failed"
    frontier = (tmp_path / "frontier.tsv").read_text().splitlines()
    band = (tmp_path / "frontier_eps.tsv").read_text().splitlines()
    assert frontier[0] == band[0] == "\t".join(POOL_COLUMNS)
    assert [line.split("\t")[0] for line in frontier[1:]] == ["t0000", "t0001", "t0003"]
    assert [line.split("\t")[0] for line in band[1:]] == ["t0000", "t0001", "t0003", "t0004"]
    assert sorted(p.name for p in (tmp_path / "gallery").iterdir()) == [
        "t0000", "t0001", "t0003", "t0004"]
    for stem in ("frontier", "pool", "seeds"):
        _assert_figure(tmp_path / stem)


def test_reporter_throttles_plots(tmp_path: Path):
    rows = _example_rows()
    _trial_folders(tmp_path, rows)
    reporter = Reporter(tmp_path, 0.1, plot_interval_s=3600)
    reporter.refresh(rows)
    png, tsv = tmp_path / "frontier.png", tmp_path / "pool.tsv"
    # Backdate both, so "rewritten" does not depend on the file system's mtime resolution.
    for p in (png, tsv):
        os.utime(p, ns=(1_000_000_000, 1_000_000_000))
    reporter.refresh(rows + [_row("t0007", 50_000_000, 0.5)])
    assert png.stat().st_mtime_ns == 1_000_000_000       # plots throttled
    assert tsv.stat().st_mtime_ns != 1_000_000_000       # tables always refreshed
    assert "t0007" in tsv.read_text()
    reporter.refresh(rows, final=True)
    assert png.stat().st_mtime_ns != 1_000_000_000


def test_reporter_with_no_ok_rows_writes_headers_and_no_plots(tmp_path: Path):
    summary = Reporter(tmp_path, 0.1, plot_interval_s=0).refresh([_failed("t0000")],
                                                                 final=True)
    assert summary == {"pool": 0, "failed": 1, "frontier": 0, "band": 0, "best_error": None}
    header = "\t".join(POOL_COLUMNS)
    assert (tmp_path / "frontier.tsv").read_text().splitlines() == [header]
    assert (tmp_path / "frontier_eps.tsv").read_text().splitlines() == [header]
    assert len((tmp_path / "pool.tsv").read_text().splitlines()) == 2
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob("*.pdf"))
