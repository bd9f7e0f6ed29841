"""What a run shows while it goes: its tables, model folders, figures and hypervolume.

One `Reporter` serves the search and the eval stage; a `Layout` says what differs. It
is fed the trial rows (plain dicts, `rows.py`): all of them at `start` (a new or resumed
run), then each new one as it arrives (`add`), and `finish` at the end. Work per result
stays flat as the run grows: rows are appended to the TSVs, the hull and band are kept
up to date incrementally (`Pool`), a model folder is copied only when it joins or its
files change, and figures are drawn on a background thread at most every
`plot_interval_s` (and once more, in full, at the end).

Files (under the stage's directory), each written atomically or appended line by line:

* `pool.tsv`: every trial (sorted by id at the end); `frontier.tsv` / `frontier_eps.tsv`:
  the rows on the lower convex hull of (cost, validation error) and in its ε-band;
* `hypervolume.tsv` (search): per result, the trials and compute so far, the
  hypervolume of the pool's validation front and that of the gallery selected on
  validation and scored on test (`hypervolume.selected_hypervolume`);
* model folders: the search's gallery (`gallery/<trial>/`, the band members); the eval
  stage has none (its models live once, in `trials/<eval id>/`); `frontier.md` / `.tex`
  tables (eval);
* figures, drawn by the stage's `figures` function (see figures.py);
* TensorBoard event files under `tensorboard/` (see events.py).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from petrinas.fileio import replace_durably, write_text_atomic
from petrinas.search import hull
from petrinas.report.events import EventLog
from petrinas.search.hypervolume import hypervolume, selected_hypervolume
from petrinas.search.pool import Pool, entry_from_row
from petrinas.search.rows import COLUMNS, DUPLICATE, FAILED, pooled

log = logging.getLogger("petrinas.report")

MODEL_FILES = ("desc.yaml", "weights.pt")  # copied from the trial folder
METRICS = "metrics.json"
HV_COLUMNS = ("trials", "compute_s", "hv_val", "hv_test")


@dataclass(frozen=True)
class Layout:
    """What a stage's reports hold.

    folders: "gallery" (search: `gallery/<trial>/` holds exactly the band members) or
             "" (eval: none; a model is stored once, in its trial folder).
    figures: draws the stage's figures from a `Snapshot` into the stage's directory.
    tables:  writes frontier.md / frontier.tex from the frontier rows (or None).
    hv_ref:  (ref_cost, ref_error[, cost_floor]) of hypervolume.tsv (the box), or None
             for no hypervolume.
    """
    eps: float
    cost_key: str = "macs"
    folders: str = "gallery"
    figures: Callable[[Path, "Snapshot"], None] | None = None
    tables: Callable[[Path, list[dict]], None] | None = None
    hv_ref: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Snapshot:
    """What figures are drawn from: the rows, hull and band at one moment."""
    rows: list[dict]
    hull_ids: list[str]
    band_ids: list[str]
    hv_rows: list[dict]


class Reporter:
    def __init__(self, run_dir: Path, layout: Layout, plot_interval_s: float):
        self.dir = Path(run_dir)
        self.layout = layout
        self.plot_interval_s = plot_interval_s
        self._rows: dict[str, dict] = {}
        self._count: Counter = Counter()        # rows by status
        self._lines: dict[str, str] = {}        # trial id -> its TSV line
        self._pool = Pool()
        self._hull: list[str] = []
        self._band: list[str] = []
        self._gallery: set[str] | None = None    # members in gallery/ (None: unknown)
        self._hv = _HypervolumeLog(layout.hv_ref) if layout.hv_ref else None
        self._last_plot: float | None = None
        self._drawing: threading.Thread | None = None
        self._events = EventLog(self.dir)

    # ------------------------------------------------------------------ feeding
    def start(self, rows: Iterable[dict]) -> dict:
        """Every row so far, in the order they were recorded: rewrite everything."""
        self._rows, self._pool, self._count = {}, Pool(), Counter()
        self._gallery = None
        if self._hv is not None:
            self._hv.reset()
        self._events.close()
        self._events = EventLog(self.dir)
        for row in rows:
            self._ingest(row)
            self._events.count_compute(float(row.get("compute_s") or 0.0))
            if not self._events.has_trial(str(row["trial_id"])):
                self._trial_events(row)   # recorded just before a kill, say
        write_tsv(self.dir / "pool.tsv", self._sorted_rows())
        if self._hv is not None:
            write_tsv(self.dir / "hypervolume.tsv", self._hv.rows, HV_COLUMNS)
        self._frontier_changed()
        self._maybe_draw()
        return self.summary()

    def add(self, row: dict) -> dict:
        """One new result: append it, update the frontier files if it changed them."""
        before = (self._hull, self._band)
        self._ingest(row)
        append_tsv(self.dir / "pool.tsv", [row])
        if self._hv is not None:
            append_tsv(self.dir / "hypervolume.tsv", self._hv.rows[-1:], HV_COLUMNS)
        if (self._hull, self._band) != before:
            self._frontier_changed()
        self._trial_events(row)  # a duplicate's search phase too; a failed trial has none
        summary = self.summary()
        self._events.run_point(float(row.get("compute_s") or 0.0), {
            "pool_size": summary["pool"], "frontier_size": summary["frontier"],
            "best_val_error": summary["best_error"],
            **({"hypervolume_val": self._hv.rows[-1]["hv_val"],
                "hypervolume_test": self._hv.rows[-1]["hv_test"]} if self._hv else {})})
        self._maybe_draw()
        return summary

    def finish(self) -> dict:
        """The final state: pool.tsv sorted by trial id, every figure drawn now."""
        write_tsv(self.dir / "pool.tsv", self._sorted_rows())
        self._gallery = None  # checked in full once more
        self._frontier_changed()
        if self._drawing is not None:
            self._drawing.join()
        if len(self._pool):
            self._draw(self._snapshot())
        self._events.close()
        return self.summary()

    def summary(self) -> dict:
        """Counts for the status line (kept as rows arrive: O(1) here)."""
        best = self._pool[self._hull[-1]].error if self._hull else None
        return {"pool": len(self._pool), "failed": self._count[FAILED],
                "duplicates": self._count[DUPLICATE], "frontier": len(self._hull),
                "band": len(self._band), "best_error": best,
                "hypervolume": self._hv.rows[-1]["hv_val"] if self._hv and self._hv.rows
                else None}

    # ----------------------------------------------------------------- internals
    def _ingest(self, row: dict) -> None:
        old = self._rows.get(row["trial_id"])
        if old is not None:
            self._count[old.get("status")] -= 1
            self._lines.pop(row["trial_id"], None)
        self._count[row.get("status")] += 1
        self._rows[row["trial_id"]] = row
        if pooled(row) and row["trial_id"] not in self._pool:
            self._pool.add(entry_from_row(row, self.layout.cost_key))
            self._hull, self._band = self._pool.frontier(), self._pool.band(self.layout.eps)
        if self._hv is not None:
            self._hv.record(row, [self._rows[t] for t in self._band], self.layout.cost_key)

    def _line(self, trial_id: str) -> str:
        if trial_id not in self._lines:
            self._lines[trial_id] = _lines([self._rows[trial_id]], COLUMNS)[0]
        return self._lines[trial_id]

    def _sorted_rows(self) -> list[dict]:
        return sorted(self._rows.values(), key=lambda r: natural_key(str(r["trial_id"])))

    def _frontier_changed(self) -> None:
        hull_rows = [self._rows[t] for t in self._hull]
        # Rows never change once recorded, so their TSV lines are formatted once.
        header = "\t".join(COLUMNS)
        for name, ids in (("frontier.tsv", self._hull), ("frontier_eps.tsv", self._band)):
            write_text_atomic(self.dir / name, "\n".join([header, *map(self._line, ids)])
                              + "\n")
        if self.layout.folders == "gallery":
            self._sync_gallery()
        if self.layout.tables is not None:
            self.layout.tables(self.dir, hull_rows)

    def _sync_gallery(self) -> None:
        """gallery/ = the band. In full the first time (a resumed run's gallery may be
        stale); after that only the members that joined or left, since a trial's files
        never change once written."""
        band = {t: self._source(t) for t in self._band}
        if self._gallery is None:
            self._gallery = set(sync_folders(self.dir / "gallery", band, prune=True))
            return
        joined = {t: src for t, src in band.items() if t not in self._gallery}
        self._gallery |= set(sync_folders(self.dir / "gallery", joined, prune=False))
        for gone in self._gallery - band.keys():
            shutil.rmtree(self.dir / "gallery" / gone, ignore_errors=True)
            self._gallery.discard(gone)

    def _trial_events(self, row: dict) -> None:
        trial_id = str(row["trial_id"])
        try:
            history = json.loads((self._source(trial_id) / METRICS).read_text()).get("history")
        except (OSError, ValueError):   # lost files are the store's business, not ours
            return
        self._events.trial(trial_id, history or {})

    def _source(self, trial_id: str) -> Path:
        return self.dir / "trials" / trial_id

    def _snapshot(self) -> Snapshot:
        return Snapshot(rows=[r for r in self._rows.values() if pooled(r)],
                        hull_ids=list(self._hull), band_ids=list(self._band),
                        hv_rows=list(self._hv.rows) if self._hv else [])

    def _maybe_draw(self) -> None:
        """Draw on a background thread when due and no drawing is under way: a slow
        figure must not hold up the loop that keeps the cluster busy."""
        if not len(self._pool) or self.layout.figures is None:
            return
        due = (self._last_plot is None
               or time.monotonic() - self._last_plot >= self.plot_interval_s)
        if not due or (self._drawing is not None and self._drawing.is_alive()):
            return
        self._last_plot = time.monotonic()
        self._drawing = threading.Thread(target=self._draw, args=(self._snapshot(),),
                                         name="petrinas-figures", daemon=True)
        self._drawing.start()

    def _draw(self, snapshot: Snapshot) -> None:
        if self.layout.figures is None:
            return
        try:
            self.layout.figures(self.dir, snapshot)
        except OSError as exc:  # a full disk: the writes that matter will stop the run
            log.warning("figures not written: %s", exc)
        except Exception as exc:  # matplotlib raises many types; all mean "no figure"
            log.warning("plotting failed (the run goes on): %s: %s", type(exc).__name__, exc)
        self._last_plot = time.monotonic()


class _HypervolumeLog:
    """One hypervolume.tsv row per result, on the layout's cost axis: hv_val from the
    pool's Pareto front of validation error; hv_test from the gallery, each model picked
    on validation error and counted with its test error (so a gallery with more members
    gets no more draws at the test set)."""

    def __init__(self, ref: tuple[float, ...]):
        self.ref = ref
        self.reset()

    def reset(self) -> None:
        self.rows: list[dict] = []
        self._front: list[tuple[float, float]] = []   # (cost, val error), Pareto
        self._trials = 0
        self._compute = 0.0

    def record(self, row: dict, gallery: Sequence[dict], cost_key: str) -> None:
        """Account for `row`, the newest result; `gallery` is the band's rows now."""
        self._trials += 1
        self._compute += float(row.get("compute_s") or 0.0)
        if pooled(row):
            self._front = _pareto(self._front + [(float(row[cost_key]),
                                                  1.0 - float(row["val_top1"]))])
        self.rows.append({"trials": self._trials, "compute_s": round(self._compute, 3),
                          "hv_val": self._volume(self._front),
                          "hv_test": round(gallery_hypervolume(gallery, cost_key, self.ref),
                                           6)})

    def _volume(self, points: list[tuple[float, float]]) -> float:
        if not points:
            return 0.0
        costs, errors = zip(*points)
        return round(hypervolume(costs, errors, *self.ref), 6)


def gallery_hypervolume(gallery: Sequence[dict], cost_key: str, ref: Sequence[float]
                        ) -> float:
    """hv_test of `gallery` (rows): picked on validation error, scored on test error,
    in the box `ref` (ref_cost, ref_error[, cost_floor]). compare reads it the same way."""
    rows = [r for r in gallery if r.get("test_top1") is not None
            and r.get("val_top1") is not None]
    return selected_hypervolume([float(r[cost_key]) for r in rows],
                                [1.0 - float(r["val_top1"]) for r in rows],
                                [1.0 - float(r["test_top1"]) for r in rows], *ref)


def _pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The non-dominated (cost, error) points, cheapest first."""
    front: list[tuple[float, float]] = []
    for cost, error in sorted(points):
        if not front or error < front[-1][1]:
            front.append((cost, error))
    return front


# ------------------------------------------------------------------------ tables

def frontier_ids(rows: Sequence[dict], eps: float, *, metric: str = "val_top1",
                 cost_key: str = "macs") -> tuple[list[str], list[str]]:
    """(hull ids, ε-band ids) of the rows that have `metric`, each sorted by cost: for
    callers with a finished run's rows (compare, eval); the loop uses `Pool`."""
    pts = [r for r in rows if r.get("status") == "ok" and r.get(metric) is not None
           and r.get(cost_key) is not None]
    if not pts:
        return [], []
    costs = [float(r[cost_key]) for r in pts]
    # Clamp: a metric a rounding hair above 1 must not make hull.py reject the pool.
    errors = [min(1.0, max(0.0, 1.0 - float(r[metric]))) for r in pts]
    return ([pts[i]["trial_id"] for i in hull.lower_hull(costs, errors)],
            [pts[i]["trial_id"] for i in hull.eps_band(costs, errors, eps)])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):  # before int: bool is an int subclass
        return str(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    # Tabs and newlines would break the row structure of a TSV.
    return re.sub(r"[\t\r\n]", " ", str(value))


def _lines(rows: Iterable[dict], columns: Sequence[str]) -> list[str]:
    return ["\t".join(_cell(row.get(c)) for c in columns) for row in rows]


def write_tsv(path: str | Path, rows: Iterable[dict], columns: Sequence[str] = COLUMNS
              ) -> None:
    """Rows as a tab-separated table with a header; missing or None values are empty."""
    write_text_atomic(path, "\n".join(["\t".join(columns), *_lines(rows, columns)]) + "\n")


def append_tsv(path: str | Path, rows: Sequence[dict], columns: Sequence[str] = COLUMNS
               ) -> None:
    """Append whole lines with one write (a reader sees a line whole or not at all); the
    header first if the file is new."""
    path = Path(path)
    text = "\n".join(_lines(rows, columns)) + "\n"
    if not path.exists():
        text = "\t".join(columns) + "\n" + text
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def natural_key(trial_id: str) -> tuple:
    """Natural order of ids, so t10000 sorts after t9999."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", trial_id))


# ------------------------------------------------------------------- model folders

def _same_file(a: Path, b: Path) -> bool:
    """Cheap identity: copy2 keeps mtime, so equal size and mtime mean an unchanged copy."""
    try:
        sa, sb = a.stat(), b.stat()
    except OSError:
        return False
    return sa.st_size == sb.st_size and sa.st_mtime_ns == sb.st_mtime_ns


def _complete(src: Path) -> bool:
    return all((src / name).is_file() for name in (*MODEL_FILES, METRICS))


def install_folder(root: Path, name: str, src: Path) -> None:
    """Copy the model files of trial folder `src` to `root/name`: built beside its place,
    then swapped in, so a reader sees either the old complete folder or the new one."""
    tmp, old, dest = root / f".{name}.tmp", root / f".{name}.old", root / name
    for stale in (tmp, old):
        shutil.rmtree(stale, ignore_errors=True)
    tmp.mkdir(parents=True)
    for file in (*MODEL_FILES, METRICS):
        shutil.copy2(src / file, tmp / file)
    if dest.exists():
        os.replace(dest, old)  # a directory cannot be renamed over a non-empty one
    replace_durably(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)


def sync_folders(root: Path, members: dict[str, Path], *, prune: bool) -> list[str]:
    """Make `root/<name>` a copy of each member's trial folder; returns the names there.

    A folder identical to its trial's files is not touched, so an unchanged set costs a
    few stat calls. A member whose trial folder is incomplete keeps an existing copy and
    is otherwise left out. With `prune`, folders of non-members are removed (and always
    the hidden leftovers of an interrupted install)."""
    root.mkdir(parents=True, exist_ok=True)
    kept = []
    for name, src in members.items():
        dest = root / name
        if _complete(src):
            if not all(_same_file(src / f, dest / f) for f in (*MODEL_FILES, METRICS)):
                install_folder(root, name, src)
            kept.append(name)
        elif dest.is_dir():
            kept.append(name)
    if prune:
        for child in root.iterdir():
            if child.name.startswith(".") or child.name not in kept:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    return kept

