"""What a run shows while it goes: the pool and frontier tables, plots, and the gallery.

Everything is derived from the trial rows (plain dicts, one per trial; see
`RunStore._row_keys`) and written atomically, so a reader polling the run directory never
sees a torn file and a refresh can be repeated at any time:

* `pool.tsv`: every trial, ok or failed; `frontier.tsv` / `frontier_eps.tsv`: the rows on
  the lower convex hull of (MACs, 1 - val_top1) and in its (1 + eps) band;
* `frontier.{png,pdf}`, `pool.{png,pdf}`, `seeds.{png,pdf}`: figures sized for one
  column of a paper (the PDFs are vector);
* `gallery/<trial_id>/`: desc, weights and metrics of every band member, the models the
  eval stage trains from scratch.

Figures are drawn with matplotlib's object API on an Agg canvas, never through pyplot, so
no global figure state is created or shared with anything else in the process.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from petrinas.fileio import write_bytes_atomic, write_text_atomic
from petrinas.search import hull

POOL_COLUMNS: tuple[str, ...] = (
    "trial_id", "parent_id", "stage", "cells", "reductions", "nodes", "macs", "params",
    "val_top1", "test_top1", "train_top1", "epochs", "wall_s", "status", "error")

log = logging.getLogger("petrinas.report")

GALLERY = "gallery"
GALLERY_FILES = ("desc.yaml", "weights.pt")  # copied from the trial folder
METRICS = "metrics.json"

# Plot styling: one paper column is ~3.5 in wide; fonts stay legible at 100 % print size.
FIGSIZE = (3.5, 2.6)
FONT = 8
DPI = 200
LOG_SPAN = 20.0  # use a log MACs axis when max/min exceeds this
STAGE_STYLE = {
    "seed": dict(marker="s", color="#1f77b4", label="seed"),
    "search": dict(marker="o", color="#ff7f0e", label="search"),
    "eval": dict(marker="^", color="#2ca02c", label="eval"),
}
OTHER_STYLE = dict(marker="D", color="#7f7f7f", label="other")
HULL_COLOR = "#d62728"
METRIC_LABELS = {
    "val_top1": "Validation top-1 error (%)",
    "test_top1": "Test top-1 error (%)",
    "train_top1": "Training top-1 error (%)",
}


# ------------------------------------------------------------------------ tables

def _ok(rows: Iterable[dict], metric: str) -> list[dict]:
    """Rows that finished and have `metric` and MACs: the points of the pool."""
    return [r for r in rows if r.get("status") == "ok"
            and r.get(metric) is not None and r.get("macs") is not None]


def frontier_ids(rows: Sequence[dict], eps: float, *, metric: str = "val_top1"
                 ) -> tuple[list[str], list[str]]:
    """(hull ids, eps-band ids) among ok rows, each sorted by MACs.

    Points are (macs, 1 - metric); rows are used in the given order, which only decides
    which of several identical points is the hull vertex (the smallest index, as in the
    strategy's pool).
    """
    pts = _ok(rows, metric)
    if not pts:
        return [], []
    costs = [int(r["macs"]) for r in pts]
    # Clamp: a metric a rounding hair above 1 must not make hull.py reject the pool.
    errors = [min(1.0, max(0.0, 1.0 - float(r[metric]))) for r in pts]
    hull_idx = hull.lower_hull(costs, errors)
    band_idx = hull.eps_band(costs, errors, eps)
    return ([pts[i]["trial_id"] for i in hull_idx], [pts[i]["trial_id"] for i in band_idx])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):  # before int: bool is an int subclass
        return str(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    # Tabs and newlines would break the row structure of a TSV.
    return re.sub(r"[\t\r\n]", " ", str(value))


def write_tsv(path: str | Path, rows: Iterable[dict],
              columns: Sequence[str] = POOL_COLUMNS) -> None:
    """Rows as a tab-separated table with a header; missing or None values are empty."""
    lines = ["\t".join(columns)]
    lines += ["\t".join(_cell(row.get(c)) for c in columns) for row in rows]
    write_text_atomic(path, "\n".join(lines) + "\n")


def _trial_order(trial_id: str) -> tuple:
    """Natural order of ids, so t10000 sorts after t9999."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", trial_id))


# ------------------------------------------------------------------------- plots

def _new_figure(figsize: tuple[float, float] = FIGSIZE, ncols: int = 1
                ) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)  # attaches itself to the figure; no pyplot involved
    axes = [fig.add_subplot(1, ncols, k + 1) for k in range(ncols)]
    for ax in axes:
        ax.tick_params(labelsize=FONT, which="both")
        ax.grid(True, which="major", linewidth=0.4, alpha=0.5)
    return fig, axes


def _save(fig: Figure, path_stem: Path) -> None:
    """`<stem>.png` (raster, DPI) and `<stem>.pdf` (vector), each written atomically."""
    path_stem = Path(path_stem)
    for fmt in ("png", "pdf"):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=DPI, bbox_inches="tight", pad_inches=0.02)
        write_bytes_atomic(path_stem.with_name(f"{path_stem.name}.{fmt}"), buf.getvalue())


def _mega(value: Any) -> float:
    return float(value) / 1e6


def _set_cost_axis(ax: Axes, values_m: Sequence[float], label: str) -> bool:
    """Label the MACs/params axis; log scale when it spans more than LOG_SPAN. Returns
    whether it is logarithmic."""
    ax.set_xlabel(label, fontsize=FONT)
    positive = [v for v in values_m if v > 0]
    use_log = (len(positive) == len(values_m) and len(positive) > 1
               and max(positive) / min(positive) > LOG_SPAN)
    if use_log:
        ax.set_xscale("log")
        # Plain numbers ("10", "100") read better than 10^1 at this size.
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        # Labelled 2s and 5s help over a few decades but crowd a wider axis.
        few_decades = max(positive) / min(positive) <= 10 ** 2.6
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}") if few_decades
                                     else NullFormatter())
    return use_log


def _by_stage(rows: Sequence[dict]) -> list[tuple[dict, list[dict]]]:
    """Rows grouped by stage (known stages first), each with its plot style."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(str(r.get("stage", "")), []).append(r)
    order = [s for s in STAGE_STYLE if s in groups] + sorted(set(groups) - set(STAGE_STYLE))
    return [(STAGE_STYLE.get(s, OTHER_STYLE), groups[s]) for s in order]


def _scatter_stages(ax: Axes, rows: Sequence[dict], x_key: str, y_of) -> None:
    for style, group in _by_stage(rows):
        ax.scatter([_mega(r[x_key]) for r in group], [y_of(r) for r in group],
                   s=12, marker=style["marker"], facecolors="none",
                   edgecolors=style["color"], linewidths=0.7, label=style["label"],
                   zorder=4)  # above the hull, so a vertex's own stage stays visible


def _hull_curve(costs_m: list[float], hull_idx: list[int],
                x_max: float, log: bool, n: int = 200) -> tuple[np.ndarray, list[int]]:
    """A dense x grid from the first hull vertex to x_max that contains every vertex
    cost (returned as marker positions). Dense, because the hull is linear in MACs and
    so curved on a log axis."""
    vx = [costs_m[i] for i in hull_idx]
    lo, hi = vx[0], max(x_max, vx[-1])
    if hi > lo:
        grid = np.geomspace(lo, hi, n) if log and lo > 0 else np.linspace(lo, hi, n)
    else:
        grid = np.array([lo])
    xs = np.unique(np.concatenate([grid, vx]))
    marks = [int(np.searchsorted(xs, v)) for v in vx]
    return xs, marks


def _draw_hull(ax: Axes, rows: Sequence[dict], metric_of, eps: float | None, log: bool,
               x_max: float, *, color: str, label: str, marker: str = "o",
               linestyle: str = "-") -> None:
    """The lower hull of (MACs, error) as a line with markers at its vertices and, when
    eps is given, the (1 + eps) bound as a dashed line extended flat to x_max."""
    if not rows:
        return
    costs = [int(r["macs"]) for r in rows]
    errors = [min(1.0, max(0.0, 1.0 - metric_of(r))) for r in rows]
    hull_idx = hull.lower_hull(costs, errors)
    costs_m = [_mega(c) for c in costs]
    xs, marks = _hull_curve(costs_m, hull_idx, x_max, log)
    # hull_error_at interpolates in the given cost units; MACs in M is a linear rescale.
    ys = np.array([hull.hull_error_at(costs_m, errors, hull_idx, x) for x in xs])
    end = marks[-1] + 1  # the hull line itself stops at its last vertex
    ax.plot(xs[:end], 100 * ys[:end], linestyle=linestyle, color=color, linewidth=1.0,
            marker=marker, markersize=2.5, markevery=marks, label=label, zorder=3)
    if eps is not None and eps > 0:
        ax.plot(xs, 100 * (1 + eps) * ys, linestyle="--", color=color, linewidth=0.8,
                alpha=0.8, label=f"(1+ε) bound, ε={eps:g}", zorder=3)


def _metric_or_val(metric: str):
    """A row's `metric`, falling back to val_top1 (reference rows from the search stage
    have no test accuracy)."""
    def get(row: dict) -> float:
        v = row.get(metric)
        return float(v if v is not None else row["val_top1"])
    return get


def plot_frontier(path_stem: Path, rows: Sequence[dict], eps: float, *,
                  metric: str = "val_top1", title: str = "",
                  reference_rows: Sequence[dict] | None = None,
                  reference_label: str = "search frontier") -> None:
    """Pool points, their lower hull and (1 + eps) bound on (MACs, top-1 error)."""
    pts = _ok(rows, metric)
    refs = [r for r in (reference_rows or []) if r.get("status", "ok") == "ok"
            and r.get("macs") is not None
            and (r.get(metric) is not None or r.get("val_top1") is not None)]
    fig, (ax,) = _new_figure()
    all_x = [_mega(r["macs"]) for r in pts + refs]
    log = _set_cost_axis(ax, all_x, "MACs (M)")
    x_max = max(all_x) if all_x else 0.0
    metric_of = _metric_or_val(metric)
    _scatter_stages(ax, pts, "macs", lambda r: 100 * (1 - float(r[metric])))
    if refs:
        _draw_hull(ax, refs, metric_of, None, log, x_max, color="#7f7f7f",
                   label=reference_label, marker="x", linestyle="-")
    _draw_hull(ax, pts, lambda r: float(r[metric]), eps, log, x_max, color=HULL_COLOR,
               label="lower hull")
    ax.set_ylabel(METRIC_LABELS.get(metric, f"{metric} error (%)"), fontsize=FONT)
    if title:
        ax.set_title(title, fontsize=FONT)
    if pts or refs:
        ax.legend(fontsize=FONT - 1, loc="best", framealpha=0.85, handlelength=1.8,
                  borderpad=0.3, labelspacing=0.25)
    _save(fig, path_stem)


def plot_pool(path_stem: Path, rows: Sequence[dict]) -> None:
    """Validation top-1 accuracy against MACs and against parameters, by stage."""
    pts = [r for r in _ok(rows, "val_top1") if r.get("params") is not None]
    fig, axes = _new_figure((6.0, 2.4), ncols=2)
    acc = lambda r: 100 * float(r["val_top1"])  # noqa: E731
    for ax, key, label in ((axes[0], "macs", "MACs (M)"), (axes[1], "params", "Params (M)")):
        _set_cost_axis(ax, [_mega(r[key]) for r in pts], label)
        _scatter_stages(ax, pts, key, acc)
    axes[0].set_ylabel("Validation top-1 (%)", fontsize=FONT)
    axes[1].sharey(axes[0])
    if pts:
        axes[0].legend(fontsize=FONT - 1, loc="lower right", framealpha=0.85)
    fig.tight_layout()
    _save(fig, path_stem)


def plot_seeds(path_stem: Path, rows: Sequence[dict]) -> None:
    """The seed models: validation top-1 against MACs, each labelled by its macro shape."""
    seeds = [r for r in _ok(rows, "val_top1") if r.get("stage") == "seed"]
    fig, (ax,) = _new_figure()
    _set_cost_axis(ax, [_mega(r["macs"]) for r in seeds], "MACs (M)")
    style = STAGE_STYLE["seed"]
    xs = [_mega(r["macs"]) for r in seeds]
    ys = [100 * float(r["val_top1"]) for r in seeds]
    ax.scatter(xs, ys, s=14, marker=style["marker"], color=style["color"], zorder=2)
    for r, x, y in zip(seeds, xs, ys):
        ax.annotate(f"c{r.get('cells', '?')}r{r.get('reductions', '?')}n{r.get('nodes', '?')}",
                    (x, y), xytext=(3, 3), textcoords="offset points", fontsize=FONT - 2)
    ax.set_ylabel("Validation top-1 (%)", fontsize=FONT)
    ax.margins(x=0.12, y=0.12)  # room for the annotations at the edges
    _save(fig, path_stem)


# ----------------------------------------------------------------------- gallery

def _same_file(a: Path, b: Path) -> bool:
    """Cheap identity: copy2 keeps mtime, so equal size and mtime mean an unchanged copy."""
    try:
        sa, sb = a.stat(), b.stat()
    except OSError:
        return False
    return sa.st_size == sb.st_size and sa.st_mtime_ns == sb.st_mtime_ns


def _metrics_bytes(src: Path, row: dict | None) -> bytes | None:
    try:
        return (src / METRICS).read_bytes()
    except OSError:
        return None if row is None else json.dumps(row, indent=1).encode()


def _up_to_date(src: Path, dest: Path, metrics: bytes) -> bool:
    if not all(_same_file(src / name, dest / name) for name in GALLERY_FILES):
        return False
    try:
        return (dest / METRICS).read_bytes() == metrics
    except OSError:
        return False


def install_folder(gallery: Path, trial_id: str, src: Path, metrics: bytes) -> None:
    """Build the folder beside its place, then swap it in, so a reader sees either the
    old complete folder or the new one."""
    tmp, old, dest = (gallery / f".{trial_id}.tmp", gallery / f".{trial_id}.old",
                      gallery / trial_id)
    for stale in (tmp, old):
        shutil.rmtree(stale, ignore_errors=True)
    tmp.mkdir()
    for name in GALLERY_FILES:
        shutil.copy2(src / name, tmp / name)
    (tmp / METRICS).write_bytes(metrics)
    if dest.exists():
        os.replace(dest, old)  # a directory cannot be renamed over a non-empty one
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)


def sync_gallery(run_dir: Path, band_ids: list[str], rows_by_id: dict[str, dict]
                 ) -> list[str]:
    """Make `run_dir/gallery/` hold exactly the band members; returns their names.

    A member whose trial folder lacks desc or weights cannot be copied: an existing
    gallery copy is kept, otherwise it is left out. Folders already identical to their
    trial are not touched, so refreshing an unchanged band costs a few stat calls.
    """
    gallery = Path(run_dir) / GALLERY
    gallery.mkdir(parents=True, exist_ok=True)
    keep: list[str] = []
    for trial_id in band_ids:
        src = Path(run_dir) / "trials" / trial_id
        dest = gallery / trial_id
        metrics = _metrics_bytes(src, rows_by_id.get(trial_id))
        if metrics is None or not all((src / n).is_file() for n in GALLERY_FILES):
            if dest.is_dir():
                keep.append(trial_id)
            continue
        if not _up_to_date(src, dest, metrics):
            install_folder(gallery, trial_id, src, metrics)
        keep.append(trial_id)
    wanted = set(keep)
    for child in gallery.iterdir():
        # Hidden entries are leftovers of an interrupted install; others left the band.
        if child.name.startswith(".") or child.name not in wanted:
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    return keep


# ---------------------------------------------------------------------- reporter

class Reporter:
    """Keeps the run directory's tables, gallery and plots in step with the pool."""

    def __init__(self, run_dir: Path, eps: float, plot_interval_s: float):
        self.run_dir = Path(run_dir)
        self.eps = eps
        self.plot_interval_s = plot_interval_s
        self._last_plot: float | None = None  # monotonic time of the last drawing

    def refresh(self, rows: list[dict], *, final: bool = False) -> dict:
        """Rewrite the TSVs and gallery; redraw the plots if due (or `final`)."""
        by_id = {r["trial_id"]: r for r in rows}
        ordered = sorted(rows, key=lambda r: _trial_order(str(r["trial_id"])))
        ok = _ok(rows, "val_top1")
        hull_ids, band_ids = frontier_ids(rows, self.eps)
        write_tsv(self.run_dir / "pool.tsv", ordered)
        write_tsv(self.run_dir / "frontier.tsv", [by_id[t] for t in hull_ids])
        write_tsv(self.run_dir / "frontier_eps.tsv", [by_id[t] for t in band_ids])
        sync_gallery(self.run_dir, band_ids, by_id)
        if ok and self._plot_due(final):
            self._plot(rows)
        errors = [1.0 - float(r["val_top1"]) for r in ok]
        return {"pool": len(ok), "failed": sum(r.get("status") == "failed" for r in rows),
                "frontier": len(hull_ids), "band": len(band_ids),
                "best_error": min(errors) if errors else None}

    def _plot_due(self, final: bool) -> bool:
        return (final or self._last_plot is None
                or time.monotonic() - self._last_plot >= self.plot_interval_s)

    def _plot(self, rows: list[dict]) -> None:
        n_ok = len(_ok(rows, "val_top1"))
        with plot_errors_logged():
            plot_frontier(self.run_dir / "frontier", rows, self.eps,
                          title=f"Search pool: {n_ok} models")
            plot_pool(self.run_dir / "pool", rows)
            plot_seeds(self.run_dir / "seeds", rows)
        # Stamp after drawing: slow plots must not eat into the next interval.
        self._last_plot = time.monotonic()


@contextmanager
def plot_errors_logged() -> Iterator[None]:
    """A figure that fails to draw is logged, not fatal: a long search must not end over
    a plot. A full or read-only disk is not a plotting problem, so OSError passes."""
    try:
        yield
    except OSError:
        raise
    except Exception as exc:  # matplotlib raises many types; all mean "no figure"
        log.warning("plotting failed (the search goes on): %s: %s", type(exc).__name__, exc)
