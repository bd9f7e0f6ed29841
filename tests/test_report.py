"""The reporter (tables, model folders, hypervolume, throttled figures) and the figures,
checked for what a reader sees: labels, points, lines, filled gallery members."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgba

from petrinas.report import figures
from petrinas.search.hypervolume import hypervolume, selected_hypervolume
from petrinas.report.frontier import frontier_ids
from petrinas.report.hypervolume_log import HV_COLUMNS, HypervolumeLog
from petrinas.report.reporter import LoopStatus, Reporter, Writer
from petrinas.report.state import ReportState
from petrinas.report.tsv import append_tsv, write_tsv
from petrinas.report.writers import FigureWriter, FrontierTables, GalleryFolders, \
    HypervolumeTable, PoolTable, TensorBoardWriter
from petrinas.report.writers.gallery import sync_folders
from petrinas.search.rows import COLUMNS
from support import ManualClock, read_tsv


def _row(trial_id: str, macs: int, val: float, *, stage: str = "search",
         test: float | None = None, **extra) -> dict:
    row = dict(trial_id=trial_id, parent_id="" if stage == "seed" else "t0000", stage=stage,
               status="ok", cells=3, reductions=1, nodes=2, macs=macs, params=macs // 10,
               val_top1=val, test_top1=test, train_top1=0.99, epochs=2, compute_s=1.5,
               device="cpu", error="", elapsed_s=3.0)
    row.update(extra)
    return row


def _failed(trial_id: str, error: str = "CUDA OOM") -> dict:
    return dict(trial_id=trial_id, parent_id="t0000", stage="search", status="failed",
                error=error, compute_s=0.5, elapsed_s=4.0)


# Hand-checked pool (macs, error = 1 - val):
#   A (100e6, .30)  B (200e6, .20)  C (300e6, .18)  D (400e6, .10)  E (500e6, .11)
#   G (150e6, .30)  F failed
# Slopes A->B -1e-9, B->C -2e-10, C->D -8e-10: C is not convex, so the hull is A, B, D.
# Hull error at C's cost is .15 and 1.1 * .15 = .165 < .18: C is out of the 10 % band;
# G: 1.1 * .25 = .275 < .30, out; E is right of D, where the hull is flat at .10, and
# .11 <= 1.1 * .10: in. The band is A, B, D, E.
def _example_rows() -> list[dict]:
    return [
        _row("t0003", 400_000_000, 0.90, test=0.88),                 # D
        _row("t0000", 100_000_000, 0.70, stage="seed", test=0.69),   # A
        _failed("t0006"),                                            # F
        _row("t0002", 300_000_000, 0.82, test=0.80),                 # C
        _row("t0004", 500_000_000, 0.89, test=0.90),                 # E
        _row("t0001", 200_000_000, 0.80, stage="seed", test=0.78),   # B
        _row("t0005", 150_000_000, 0.70),                            # G
    ]


HULL, BAND = ["t0000", "t0001", "t0003"], ["t0000", "t0001", "t0003", "t0004"]


# ------------------------------------------------------------------------- tables

def test_frontier_ids_hand_checked_example():
    assert frontier_ids(_example_rows(), 0.1) == (HULL, BAND)
    # eps = 0: the hull line only; E (.11) is above the flat extension (.10).
    assert frontier_ids(_example_rows(), 0.0) == (HULL, HULL)


def test_frontier_ids_other_metric_skips_rows_without_it():
    rows = [_row("a", 100, 0.7, test=0.65), _row("b", 200, 0.8, test=None),
            _row("c", 300, 0.9, test=0.85)]
    assert frontier_ids(rows, 0.0, metric="test_top1") == (["a", "c"], ["a", "c"])
    assert frontier_ids([], 0.1) == ([], []) == frontier_ids([_failed("t0")], 0.1)


def test_write_and_append_tsv(tmp_path: Path):
    rows = _example_rows() + [_failed("t0007", "line one\nline\ttwo")]
    rows[0]["val_top1"] = 0.123456789
    path = tmp_path / "pool.tsv"
    write_tsv(path, rows[:4])
    append_tsv(path, rows[4:])
    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == list(COLUMNS)
    assert len(lines) == 1 + len(rows)
    assert all(len(line.split("\t")) == len(COLUMNS) for line in lines)
    cells = [dict(zip(COLUMNS, line.split("\t"))) for line in lines[1:]]
    assert cells[0]["val_top1"] == "0.123457"          # 6 significant digits
    assert cells[6]["test_top1"] == ""                  # None
    assert cells[0]["macs"] == "400000000"              # ints are not rounded
    failed = [c for c in cells if c["status"] == "failed"]
    assert [c["trial_id"] for c in failed] == ["t0006", "t0007"]
    assert failed[0]["val_top1"] == "" and failed[0]["macs"] == ""
    assert failed[1]["error"] == "line one line two"
    assert not list(tmp_path.glob(".*"))                # no temp file left behind
    append_tsv(tmp_path / "new.tsv", rows[:1], ("trial_id", "macs"))
    assert (tmp_path / "new.tsv").read_text() == "trial_id\tmacs\nt0003\t400000000\n"


# ------------------------------------------------------------------- model folders

def _fake_trial(run_dir: Path, trial_id: str, *, weights: bytes = b"w",
                metrics: bool = True) -> None:
    folder = run_dir / "trials" / trial_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "desc.yaml").write_text(f"name: {trial_id}\n")
    (folder / "weights.pt").write_bytes(weights + trial_id.encode())
    if metrics:
        (folder / "metrics.json").write_text(json.dumps({"trial_id": trial_id, "x": 1}))


def test_sync_folders_copies_only_what_changed_and_prunes(tmp_path: Path):
    for t in ("t0000", "t0001", "t0002"):
        _fake_trial(tmp_path, t, metrics=t != "t0002")
    gallery = tmp_path / "gallery"
    src = {t: tmp_path / "trials" / t for t in ("t0000", "t0001", "t0002")}
    # t0002 has no metrics.json yet (mid-write): left out.
    assert sync_folders(gallery, src, prune=True) == ["t0000", "t0001"]
    for t in ("t0000", "t0001"):
        assert sorted(p.name for p in (gallery / t).iterdir()) == [
            "desc.yaml", "metrics.json", "weights.pt"]
        assert (gallery / t / "weights.pt").read_bytes() == b"w" + t.encode()
    inode0 = (gallery / "t0000").stat().st_ino
    (tmp_path / "trials" / "t0001" / "weights.pt").write_bytes(b"retrained-and-longer")
    assert sync_folders(gallery, {t: src[t] for t in ("t0000", "t0001")},
                        prune=True) == ["t0000", "t0001"]
    assert (gallery / "t0000").stat().st_ino == inode0          # unchanged: untouched
    assert (gallery / "t0001" / "weights.pt").read_bytes() == b"retrained-and-longer"
    (gallery / ".t0001.tmp").mkdir()                            # an interrupted install
    assert sync_folders(gallery, {"t0000": src["t0000"]}, prune=True) == ["t0000"]
    assert sorted(p.name for p in gallery.iterdir()) == ["t0000"]
    # Without pruning (the eval stage) nothing else in the folder is touched.
    (gallery / "pool.tsv").write_text("x")
    sync_folders(gallery, {"m1": src["t0001"]}, prune=False)
    assert sorted(p.name for p in gallery.iterdir()) == ["m1", "pool.tsv", "t0000"]


# ----------------------------------------------------------------------- reporter

def _reporter(run_dir: Path, interval: float = 3600.0, drawn: list | None = None,
              hv_ref=(1e9, 0.8), clock=None) -> Reporter:
    def draw(folder: Path, snapshot) -> None:
        if drawn is not None:
            drawn.append(sorted(r["trial_id"] for r in snapshot.rows))
    return Reporter(ReportState(0.1, hypervolume=HypervolumeLog(hv_ref)), [
        PoolTable(run_dir), HypervolumeTable(run_dir), FrontierTables(run_dir),
        GalleryFolders(run_dir), TensorBoardWriter(run_dir),
        FigureWriter(run_dir, draw, interval, clock=clock or ManualClock())])


def test_start_add_finish_write_tables_gallery_and_hypervolume(tmp_path: Path):
    rows = _example_rows()
    for r in rows:
        if r["status"] == "ok":
            _fake_trial(tmp_path, r["trial_id"])
    reporter = _reporter(tmp_path)
    summary = reporter.start(rows[:5])   # D A F C E
    assert summary["pool"] == 4 and summary["failed"] == 1
    for row in rows[5:]:                 # B G arrive
        summary = reporter.add(row)
    assert summary == {"pool": 6, "failed": 1, "duplicates": 0, "frontier": 3, "band": 4,
                       "best_error": pytest.approx(0.10),
                       "hypervolume": summary["hypervolume"]}
    # Sorted at the start; while the run goes, appended in arrival order.
    assert [r["trial_id"] for r in read_tsv(tmp_path / "pool.tsv")] == \
        ["t0000", "t0002", "t0003", "t0004", "t0006", "t0001", "t0005"]
    assert [r["trial_id"] for r in read_tsv(tmp_path / "frontier.tsv")] == HULL
    assert [r["trial_id"] for r in read_tsv(tmp_path / "frontier_eps.tsv")] == BAND
    assert sorted(p.name for p in (tmp_path / "gallery").iterdir()) == BAND
    hv = read_tsv(tmp_path / "hypervolume.tsv")
    assert list(hv[0]) == list(HV_COLUMNS) and len(hv) == 7
    assert [int(r["trials"]) for r in hv] == list(range(1, 8))
    assert float(hv[-1]["compute_s"]) == pytest.approx(6 * 1.5 + 0.5)
    ok = [r for r in rows if r["status"] == "ok"]
    assert float(hv[-1]["hv_val"]) == pytest.approx(hypervolume(
        [r["macs"] for r in ok], [1 - r["val_top1"] for r in ok], 1e9, 0.8), abs=1e-6)
    gallery = [r for r in ok if r["trial_id"] in BAND]
    # The gallery picked on validation error, scored on test error.
    assert float(hv[-1]["hv_test"]) == pytest.approx(selected_hypervolume(
        [r["macs"] for r in gallery], [1 - r["val_top1"] for r in gallery],
        [1 - r["test_top1"] for r in gallery], 1e9, 0.8), abs=1e-6)
    assert summary["hypervolume"] == pytest.approx(float(hv[-1]["hv_val"]))
    reporter.finish()                    # sorted at the end
    assert [r["trial_id"] for r in read_tsv(tmp_path / "pool.tsv")] == \
        [f"t{i:04d}" for i in range(7)]


def test_figures_are_throttled_off_the_loop_and_drawn_at_the_end(tmp_path: Path):
    """Fails if the reporter draws on every result within the interval, or not in full
    at the end. The interval is measured on a clock that does not move here."""
    drawn: list = []
    reporter = _reporter(tmp_path, interval=3600.0, drawn=drawn)
    rows = _example_rows()
    reporter.start(rows[:2])
    [figure_writer] = [w for w in reporter.writers if isinstance(w, FigureWriter)]
    figure_writer._drawing.join()                 # the first drawing, on its thread
    assert drawn == [["t0000", "t0003"]]
    for row in rows[2:]:
        reporter.add(row)
    assert len(drawn) == 1                          # not due again within the interval
    reporter.finish()
    assert len(drawn) == 2 and len(drawn[-1]) == 6  # the final state, drawn in full


def test_no_trained_model_means_headers_and_no_figures(tmp_path: Path):
    drawn: list = []
    reporter = _reporter(tmp_path, interval=0, drawn=drawn)
    summary = reporter.start([_failed("t0000")])
    reporter.finish()
    assert summary["pool"] == 0 and summary["best_error"] is None and drawn == []
    header = "\t".join(COLUMNS)
    assert (tmp_path / "frontier.tsv").read_text().splitlines() == [header]
    assert len((tmp_path / "pool.tsv").read_text().splitlines()) == 2


class Recorder(Writer):
    """A writer that notes each call and what the state held by then."""

    def __init__(self, name: str, calls: list):
        self.name, self.calls = name, calls

    def on_start(self, state: ReportState) -> None:
        self.calls.append((self.name, "start", sorted(state.rows)))

    def on_result(self, row: dict, state: ReportState) -> None:
        self.calls.append((self.name, row["trial_id"], sorted(state.rows)))

    def on_tick(self, loop: LoopStatus, state: ReportState) -> None:
        self.calls.append((self.name, loop, sorted(state.rows)))

    def on_loop_end(self) -> None:
        self.calls.append((self.name, "loop end"))

    def on_finish(self, state: ReportState) -> None:
        self.calls.append((self.name, "finish", sorted(state.rows)))


def test_the_reporter_feeds_the_state_first_then_each_writer_in_order():
    calls: list = []
    rows = _example_rows()
    state = ReportState(0.1)
    state.ingest(_row("t0099", 100, 0.5))             # a previous start's row: dropped
    reporter = Reporter(state, [Recorder("a", calls), Recorder("b", calls)])
    assert reporter.start(rows[:2])["pool"] == 2
    assert reporter.add(rows[2])["failed"] == 1
    loop = LoopStatus(running=2, waiting="", draining="", elapsed=5.0, time_left=55.0)
    reporter.tick(loop)
    reporter.loop_end()
    assert reporter.finish() == state.summary()
    first, both = ["t0000", "t0003"], ["t0000", "t0003", "t0006"]
    assert calls == [("a", "start", first), ("b", "start", first),
                     ("a", "t0006", both), ("b", "t0006", both),
                     ("a", loop, both), ("b", loop, both),
                     ("a", "loop end"), ("b", "loop end"),
                     ("a", "finish", both), ("b", "finish", both)]


def test_the_state_says_when_the_frontier_moved_and_counts_a_trial_once():
    rows = {r["trial_id"]: r for r in _example_rows()}
    state = ReportState(0.1)
    moved = []
    for trial_id in ("t0000", "t0001", "t0002", "t0006", "t0005", "t0003"):
        state.ingest(rows[trial_id])
        moved.append(state.frontier_changed)
    # A, B open the hull; C extends it, then leaves hull and band when D comes; F and G
    # move nothing.
    assert moved == [True, True, True, False, False, True]
    assert state.hull == HULL and state.band == ["t0000", "t0001", "t0003"]
    state.ingest(dict(rows["t0006"], status="lost"))  # F recorded again: counted once
    assert state.summary()["failed"] == 0 and len(state.rows) == 6
    assert state.hv_rows == [] and state.summary()["hypervolume"] is None


# -------------------------------------------------------------------------- figures

def _scatters(ax) -> list[PathCollection]:
    return [c for c in ax.collections if isinstance(c, PathCollection)]


def _points(ax) -> list[tuple[float, float]]:
    return [tuple(p) for c in _scatters(ax) for p in np.asarray(c.get_offsets())]


def test_frontier_figure_shows_every_model_the_hull_and_the_gallery():
    rows = [r for r in _example_rows() if r["status"] == "ok"]
    fig = figures.frontier_figure(rows, BAND, 0.1, title="Search")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "MACs" and ax.get_ylabel() == "Validation error (%)"
    assert ax.get_title() == "Search" and ax.get_xscale() == "linear"  # 5x span: linear
    points = sorted(_points(ax))
    assert points == sorted((r["macs"], pytest.approx(100 * (1 - r["val_top1"])))
                            for r in rows)
    # Filled markers are exactly the gallery's.
    filled = sorted((float(x), round(float(y), 6)) for c in _scatters(ax)
                    for (x, y), face in zip(np.asarray(c.get_offsets()),
                                            c.get_facecolors()) if face[3] > 0)
    assert filled == sorted((float(r["macs"]), round(100 * (1 - r["val_top1"]), 6))
                            for r in rows if r["trial_id"] in BAND)
    # The hull line runs through its vertices A, B, D and stops at D.
    line = next(line for line in ax.get_lines() if line.get_label() == "lower hull")
    xs, ys = line.get_data()
    for x, err in ((100e6, 30.0), (200e6, 20.0), (400e6, 10.0)):
        assert ys[list(xs).index(x)] == pytest.approx(err)
    assert max(xs) == 400e6
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["seed", "grown", "gallery (filled)", "lower hull", "ε-band (ε = 0.1)"]
    # Costs read in units, not as 0.1-0.5 "M" or 1e8.
    assert ax.xaxis.get_major_formatter()(2e8) == "200M"
    assert ax.xaxis.get_major_formatter()(16_700) == "16.7k"


def _marker_path(marker: str):
    """The path a scatter of `marker` draws (what a PathCollection holds)."""
    from matplotlib.markers import MarkerStyle
    style = MarkerStyle(marker)
    return style.get_path().transformed(style.get_transform())


def _entries(ax) -> dict:
    """label -> what the legend draws for it (a tuple for entries of several markers)."""
    legend = ax.get_legend()
    shown = dict(zip([t.get_text() for t in legend.get_texts()], legend.legend_handles))
    handles, labels = ax.get_legend_handles_labels()
    for handle, label in zip(handles, labels):
        members = getattr(handle, figures.LEGEND_HANDLE, None)
        if isinstance(members, tuple):
            shown[label] = members
    return shown


def _looks_like(handle, points: PathCollection, *, filled: bool) -> bool:
    """A legend marker (a marker line, or a points collection's own entry) drawn as
    `points` draws its hollow (or filled) members."""
    if isinstance(handle, PathCollection):
        path, edge = handle.get_paths()[0], tuple(handle.get_edgecolors()[0])
        face = tuple(handle.get_facecolors()[0]) if len(handle.get_facecolors()) else (0,) * 4
    else:
        path, edge = _marker_path(handle.get_marker()), to_rgba(handle.get_markeredgecolor())
        face = to_rgba(handle.get_markerfacecolor())
    faces = [tuple(f) for f in points.get_facecolors()]
    return (np.allclose(path.vertices, points.get_paths()[0].vertices)
            and edge == tuple(points.get_edgecolors()[0])
            and (face in faces if filled else face[3] == 0))


@pytest.mark.parametrize("figure", ["search", "eval"])
def test_legend_markers_are_the_plotted_ones(figure):
    """Each kind's entry is its points' marker and colour, hollow as its models outside
    the gallery are; the gallery's entry shows the filled markers of the kinds in it.
    Fails if an entry takes another marker (the eval figure's gallery entry was a grey
    circle beside green triangles) or the fill of whichever point came first."""
    if figure == "search":
        rows = [r for r in _example_rows() if r["status"] == "ok"]
        ax = figures.frontier_figure(rows, BAND, 0.1).axes[0]
        kinds, gallery = ["seed", "grown"], "gallery (filled)"
    else:
        rows = [_row(f"e{i}", m, v, stage="eval", test=t) for i, (m, v, t) in
                enumerate([(1e6, 0.8, 0.6), (1e7, 0.85, 0.75), (1e8, 0.7, 0.9)])]
        ax = figures.eval_frontier_figure(rows, 0.0).axes[0]
        kinds, gallery = ["eval"], "ε-band of val. error (filled, ε = 0)"
    entries = _entries(ax)
    points = [c for c in _scatters(ax) if len(c.get_offsets())]  # one per kind, in order
    assert list(entries)[:len(kinds) + 1] == [*kinds, gallery]
    assert len(points) == len(kinds)
    for kind, collection in zip(kinds, points):
        assert _looks_like(entries[kind], collection, filled=False), kind
    members = entries[gallery]
    members = members if isinstance(members, tuple) else (members,)
    assert len(members) == len(kinds)
    for member, collection in zip(members, points):
        assert _looks_like(member, collection, filled=True)


def test_the_eps_band_legend_entry_is_the_band_outlined():
    """Fails if the band's entry is its own 15 %-opaque patch without an edge, which
    does not show on the legend's white (it was invisible)."""
    rows = [r for r in _example_rows() if r["status"] == "ok"]
    ax = figures.frontier_figure(rows, BAND, 0.1).axes[0]
    band = next(c for c in ax.collections if c.get_label() == "ε-band (ε = 0.1)")
    entry = _entries(ax)["ε-band (ε = 0.1)"]
    assert to_rgba(entry.get_facecolor()) == tuple(band.get_facecolor()[0])
    assert to_rgba(entry.get_edgecolor()) == to_rgba(figures.HULL_COLOR)
    assert entry.get_linewidth() > 0


def test_eval_frontier_has_the_reference_line_and_a_log_axis():
    evals = [_row(f"e{i}", m, 0.8, stage="eval", test=t)
             for i, (m, t) in enumerate([(1_000_000, 0.6), (10_000_000, 0.75),
                                         (100_000_000, 0.9)])]
    reference = [r for r in _example_rows() if r["trial_id"] in HULL]
    fig = figures.frontier_figure(evals, [], 0.0, metric="test_top1",
                                  reference_rows=reference, reference_label="search")
    ax = fig.axes[0]
    assert ax.get_ylabel() == "Test error (%)" and ax.get_xscale() == "log"
    grey = next(line for line in ax.get_lines() if line.get_label() == "search")
    assert to_rgba(grey.get_color()) == to_rgba("#7f7f7f")
    assert sorted(p[0] for p in _points(ax)) == [1e6, 1e7, 1e8]


def test_pool_seeds_and_hypervolume_figures():
    rows = [r for r in _example_rows() if r["status"] == "ok"]
    pool = figures.pool_figure(rows, BAND)
    assert [ax.get_xlabel() for ax in pool.axes] == ["MACs", "Parameters"]
    assert pool.axes[0].get_ylabel() == "Validation error (%)"
    assert all(len(_points(ax)) == len(rows) for ax in pool.axes)

    seeds = figures.seeds_figure(rows)
    ax = seeds.axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["3", "3"]   # cells of A and B
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["1 red., 2 nodes"]
    assert len(_points(ax)) == 2

    hv_rows = [{"trials": i, "compute_s": 3600.0 * i, "hv_val": 0.1 * i, "hv_test": 0.05 * i}
               for i in range(1, 4)]
    ax = figures.hypervolume_figure(hv_rows).axes[0]
    assert ax.get_xlabel() == "Cumulative compute (device hours)"
    val = next(line for line in ax.get_lines() if line.get_label() == "pool, validation")
    assert list(val.get_xdata()) == [1.0, 2.0, 3.0]
    assert list(val.get_ydata()) == pytest.approx([0.1, 0.2, 0.3])


def test_save_writes_png_and_a_dateless_pdf(tmp_path: Path):
    fig = figures.frontier_figure([_row("t0", 100, 0.5)], ["t0"], 0.0)
    figures.save(fig, tmp_path / "f")
    first = (tmp_path / "f.pdf").read_bytes()
    os.utime(tmp_path / "f.pdf", (0, 0))
    figures.save(fig, tmp_path / "f")
    assert (tmp_path / "f.pdf").read_bytes() == first     # no creation date inside
    assert (tmp_path / "f.png").stat().st_size > 1000


@pytest.mark.parametrize("label, below", [("petridish", False), ("x" * 41, True)])
def test_a_legend_with_long_labels_goes_below_the_axes_short_ones_stay_inside(label, below):
    """compare's group labels name their config differences; inside the axes a legend
    of them covered the curves (the search-quality figure of this benchmark did)."""
    fig, (ax,) = figures.new_figure()
    ax.plot([0, 1], [0, 1], label=label)
    ax.plot([0, 1], [1, 0], label="random_search")
    figures.legend(ax)
    fig.canvas.draw()
    box = ax.get_legend().get_window_extent().transformed(ax.transAxes.inverted())
    assert (box.y1 < 0) == below   # wholly under the axes, or inside them
    assert (box.y0 >= 0) == (not below)
