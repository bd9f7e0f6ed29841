"""The figures of a run, sized for one column of a paper (3.5 in), PNG and vector PDF.

Every figure plots top-1 *error* (%) against a cost (MACs, parameters or latency), with
cost labels in engineering units (16k, 1.2M) and a log axis when the costs span more
than LOG_SPAN. Each `*_figure` function returns a matplotlib Figure (object API on an
Agg canvas, never pyplot, so no global state), which `save` writes; tests inspect the
figures themselves (labels, points, lines) rather than the files.

Styles: each kind of job (search/kinds.py) takes the next marker and colour of
KIND_PALETTE in the kinds' declared order, so seeds are squares, grown children circles,
random-search models diamonds, eval models triangles, and a kind added later gets a style
of its own; gallery (ε-band) members are filled; the lower hull is a red line with
the ε-band shaded above it. The eval figure plots test error, with the frontier chosen on
validation error (as in its tables) joined in red and no band shading.
"""

from __future__ import annotations

import io
import itertools
import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.legend_handler import HandlerTuple
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import EngFormatter, LogLocator, NullFormatter

from petrinas.fileio import write_bytes_atomic
from petrinas.search import hull
from petrinas.search.kinds import KINDS, Kinds

FIGSIZE = (3.5, 2.6)
FONT = 8
DPI = 200
LOG_SPAN = 20.0
HULL_COLOR = "#d62728"
# (marker, colour) of each kind's models, in the kinds' declared order: the first four
# are those of seed, search, random and eval. Neither the hull's red nor OTHER_STYLE's
# grey is among them.
KIND_PALETTE = (("s", "#1f77b4"), ("o", "#ff7f0e"), ("D", "#9467bd"), ("^", "#2ca02c"),
                ("v", "#8c564b"), ("P", "#e377c2"), ("*", "#17becf"), ("h", "#bcbd22"))
OTHER_STYLE = dict(marker="X", color="#7f7f7f", label="other")  # a stage of no kind
COST_LABELS = {"macs": "MACs", "params": "Parameters", "latency_ms": "Latency (ms)"}
ERROR_LABELS = {"val_top1": "Validation error (%)", "test_top1": "Test error (%)"}
FRONTIER_LABEL = "frontier (selected on val. error)"


def stage_styles(kinds: Kinds = KINDS) -> dict[str, dict]:
    """stage -> the marker, colour and legend label of its kind, in the declared order
    (past the palette's end, its styles come round again)."""
    return {kind.name: dict(marker=marker, color=color, label=kind.legend_label)
            for kind, (marker, color) in zip(kinds, itertools.cycle(KIND_PALETTE))}


def seed_rows(rows: Sequence[dict], kinds: Kinds = KINDS) -> list[dict]:
    """The rows of the kinds the search starts from: what the seeds figure plots."""
    stages = kinds.names(lambda kind: kind.starts_search)
    return [r for r in rows if r.get("stage") in stages]


def save(fig: Figure, path_stem: Path) -> None:
    """`<stem>.png` (raster, DPI) and `<stem>.pdf` (vector, no date), each atomically."""
    path_stem = Path(path_stem)
    for fmt in ("png", "pdf"):
        buf = io.BytesIO()
        metadata = {"CreationDate": None} if fmt == "pdf" else None
        fig.savefig(buf, format=fmt, dpi=DPI, bbox_inches="tight", pad_inches=0.02,
                    metadata=metadata)
        write_bytes_atomic(path_stem.with_name(f"{path_stem.name}.{fmt}"), buf.getvalue())


def error_pct(row: dict, metric: str) -> float:
    return 100.0 * (1.0 - float(row[metric]))


# ------------------------------------------------------------------------- figures

def frontier_figure(rows: Sequence[dict], band_ids: Sequence[str], eps: float, *,
                    cost_key: str = "macs", metric: str = "val_top1", title: str = "",
                    reference_rows: Sequence[dict] = (),
                    reference_label: str = "search frontier",
                    kinds: Kinds = KINDS) -> Figure:
    """Every model, the lower hull of (cost, error) with its (1 + eps) band shaded, and
    the gallery (band members) filled. `reference_rows` (another stage's frontier, with
    their own error) are drawn as a grey line for comparison."""
    fig, (ax,) = new_figure()
    log = cost_axis(ax, [float(r[cost_key]) for r in [*rows, *reference_rows]], cost_key)
    _scatter(ax, rows, cost_key, metric, set(band_ids), kinds=kinds)
    if reference_rows:
        _hull_line(ax, reference_rows, cost_key, "val_top1", log, color="#7f7f7f",
                   label=reference_label)
    if rows:
        _hull_line(ax, rows, cost_key, metric, log, color=HULL_COLOR, label="lower hull",
                   eps=eps)
    ax.set_ylabel(ERROR_LABELS.get(metric, f"{metric} error (%)"), fontsize=FONT)
    if title:
        ax.set_title(title, fontsize=FONT)
    legend(ax)
    return fig


def eval_frontier_figure(rows: Sequence[dict], eps: float, *, cost_key: str = "macs",
                         title: str = "", reference_rows: Sequence[dict] = (),
                         reference_label: str = "search frontier (val.)",
                         kinds: Kinds = KINDS) -> Figure:
    """Eval models at their test error. The frontier and the ε-band are those of
    frontier.tsv: selected on validation error by the same function, so the figure and the
    tables name the same models. The frontier line joins them at their test errors (not
    a hull of test error: choosing by test error would tune on the test set); band
    members are filled (a band of validation error has no place on a test-error axis)."""
    from petrinas.report.frontier import frontier_ids  # frontier.py does not import figures

    hull_ids, band_ids = frontier_ids(rows, eps, cost_key=cost_key)
    fig, (ax,) = new_figure()
    log = cost_axis(ax, [float(r[cost_key]) for r in [*rows, *reference_rows]], cost_key)
    _scatter(ax, rows, cost_key, "test_top1", set(band_ids),
             band_label=f"ε-band of val. error (filled, ε = {eps:g})", kinds=kinds)
    if reference_rows:
        _hull_line(ax, reference_rows, cost_key, "val_top1", log, color="#7f7f7f",
                   label=reference_label)
    by_id = {r["trial_id"]: r for r in rows}
    front = [by_id[t] for t in hull_ids]          # cheapest first
    ax.plot([float(r[cost_key]) for r in front], [error_pct(r, "test_top1") for r in front],
            color=HULL_COLOR, linewidth=1.0, marker="o", markersize=2.5, zorder=3,
            label=FRONTIER_LABEL)
    ax.set_ylabel(ERROR_LABELS["test_top1"], fontsize=FONT)
    if title:
        ax.set_title(title, fontsize=FONT)
    legend(ax)
    return fig


def pool_figure(rows: Sequence[dict], band_ids: Sequence[str], kinds: Kinds = KINDS
                ) -> Figure:
    """Validation error against MACs and against parameters, side by side."""
    fig, axes = new_figure((6.0, 2.4), ncols=2)
    for ax, key in zip(axes, ("macs", "params")):
        cost_axis(ax, [float(r[key]) for r in rows], key)
        _scatter(ax, rows, key, "val_top1", set(band_ids), kinds=kinds)
    axes[0].set_ylabel(ERROR_LABELS["val_top1"], fontsize=FONT)
    axes[1].sharey(axes[0])
    legend(axes[0])
    fig.tight_layout()
    return fig


def seeds_figure(rows: Sequence[dict], cost_key: str = "macs", kinds: Kinds = KINDS
                 ) -> Figure:
    """The seed models: colour = reductions, marker = nodes per cell, and the number of
    cells written beside each point (one digit, so labels do not run into each other)."""
    seeds = seed_rows(rows, kinds)
    fig, (ax,) = new_figure()
    cost_axis(ax, [float(r[cost_key]) for r in seeds], cost_key)
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"]
    markers = ["o", "s", "^", "D", "v"]
    groups: dict[tuple[int, int], list[dict]] = {}
    for r in seeds:
        groups.setdefault((int(r["reductions"]), int(r["nodes"])), []).append(r)
    for (reductions, nodes), group in sorted(groups.items()):
        ax.scatter([float(r[cost_key]) for r in group],
                   [error_pct(r, "val_top1") for r in group], s=16,
                   color=colors[reductions % len(colors)],
                   marker=markers[(nodes - 1) % len(markers)], zorder=3,
                   label=f"{reductions} red., {nodes} node{'s' * (nodes > 1)}")
        for r in group:
            ax.annotate(str(int(r["cells"])), (float(r[cost_key]), error_pct(r, "val_top1")),
                        xytext=(3, 2), textcoords="offset points", fontsize=FONT - 2)
    ax.set_ylabel(ERROR_LABELS["val_top1"], fontsize=FONT)
    ax.set_title("Seed models (label: number of cells)", fontsize=FONT)
    ax.margins(x=0.08, y=0.12)
    legend(ax)
    return fig


def hypervolume_figure(rows: Sequence[dict]) -> Figure:
    """Hypervolume of the pool's validation front and of the gallery's test front
    against cumulative compute (rows of hypervolume.tsv)."""
    fig, (ax,) = new_figure()
    hours = [float(r["compute_s"]) / 3600 for r in rows]
    for key, label, color in (("hv_val", "pool, validation", "#1f77b4"),
                              ("hv_test", "gallery, test", "#d62728")):
        ax.step(hours, [float(r[key]) for r in rows], where="post", color=color,
                linewidth=1.0, label=label)
    ax.set_xlabel("Cumulative compute (device hours)", fontsize=FONT)
    ax.set_ylabel("Hypervolume", fontsize=FONT)
    legend(ax)
    return fig


# ------------------------------------------------------------------------- helpers

def new_figure(figsize: tuple[float, float] = FIGSIZE, ncols: int = 1
                ) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)  # attaches itself to the figure; no pyplot involved
    axes = [fig.add_subplot(1, ncols, k + 1) for k in range(ncols)]
    for ax in axes:
        ax.tick_params(labelsize=FONT, which="both")
        ax.grid(True, which="major", linewidth=0.4, alpha=0.5)
    return fig, axes


def cost_axis(ax: Axes, values: Sequence[float], cost_key: str) -> bool:
    """Label the cost axis in engineering units; log scale when it spans more than
    LOG_SPAN. Returns whether it is logarithmic."""
    ax.set_xlabel(COST_LABELS.get(cost_key, cost_key), fontsize=FONT)
    formatter = EngFormatter(sep="", places=None) if cost_key != "latency_ms" else None
    positive = [v for v in values if v > 0]
    use_log = (len(positive) == len(values) and len(positive) > 1
               and max(positive) / min(positive) > LOG_SPAN)
    if use_log:
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        few_decades = max(positive) / min(positive) <= 10 ** 2.6
        ax.xaxis.set_minor_formatter(EngFormatter(sep="") if few_decades and formatter
                                     else NullFormatter())
    if formatter is not None:
        ax.xaxis.set_major_formatter(formatter)
    return use_log


POINT_SIZE = 14          # scatter area, points^2
POINT_EDGE = 0.7
# An artist may carry the handle its legend entry shows instead of itself (`legend`).
LEGEND_HANDLE = "petrinas_legend_handle"


def _scatter(ax: Axes, rows: Sequence[dict], cost_key: str, metric: str,
             gallery: set[str], band_label: str = "gallery (filled)", *,
             kinds: Kinds = KINDS) -> None:
    """Points by stage, in the kinds' order (stages of no kind last); gallery members
    filled, the others hollow. A points collection's own legend entry would take the
    fill of its first point, so each kind's entry is its hollow marker, and the gallery's
    the filled markers of the kinds it holds, each as plotted."""
    styles = stage_styles(kinds)
    order = list(styles)
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(str(r.get("stage", "")), []).append(r)
    in_gallery = []
    for stage in sorted(groups, key=lambda s: order.index(s) if s in styles else len(order)):
        style = styles.get(stage, OTHER_STYLE)
        group = groups[stage]
        filled = [r["trial_id"] in gallery for r in group]
        points = ax.scatter([float(r[cost_key]) for r in group],
                            [error_pct(r, metric) for r in group], s=POINT_SIZE,
                            marker=style["marker"], edgecolors=style["color"],
                            linewidths=POINT_EDGE, label=style["label"], zorder=4,
                            facecolors=[style["color"] if f else "none" for f in filled])
        setattr(points, LEGEND_HANDLE, _marker(style, filled=False))
        if any(filled):
            in_gallery.append(_marker(style, filled=True))
    if in_gallery:  # "filled = gallery": the filled markers, side by side
        entry = ax.add_line(Line2D([], [], linestyle="", label=band_label))
        setattr(entry, LEGEND_HANDLE, tuple(in_gallery))


def _marker(style: dict, *, filled: bool) -> Line2D:
    """A legend handle drawn as `_scatter` draws a point of `style`."""
    return Line2D([], [], linestyle="", marker=style["marker"],
                  markersize=POINT_SIZE ** 0.5, markeredgewidth=POINT_EDGE,
                  markeredgecolor=style["color"],
                  markerfacecolor=style["color"] if filled else "none")


def _hull_line(ax: Axes, rows: Sequence[dict], cost_key: str, metric: str, log: bool, *,
               color: str, label: str, eps: float = 0.0) -> None:
    """The lower hull as a line through its vertices (dense, since a straight segment in
    cost is curved on a log axis), and the (1 + eps) band shaded above it."""
    costs = [float(r[cost_key]) for r in rows]
    errors = [min(1.0, max(0.0, 1.0 - float(r[metric]))) for r in rows]
    vertices = hull.lower_hull(costs, errors)
    lo, hi = costs[vertices[0]], max(costs)
    grid = np.geomspace(lo, hi, 200) if log and lo > 0 and hi > lo else np.linspace(lo, hi, 200)
    xs = np.unique(np.concatenate([grid, [costs[i] for i in vertices]]))
    ys = 100 * np.array([hull.hull_error_at(costs, errors, vertices, x) for x in xs])
    on_hull = xs <= costs[vertices[-1]]
    ax.plot(xs[on_hull], ys[on_hull], color=color, linewidth=1.0, label=label, zorder=3)
    ax.plot([costs[i] for i in vertices], [100 * errors[i] for i in vertices], linestyle="",
            marker="o", markersize=2.5, color=color, zorder=3)
    if eps > 0:
        band = ax.fill_between(xs, ys, (1 + eps) * ys, color=color, alpha=0.15, linewidth=0,
                               label=f"ε-band (ε = {eps:g})", zorder=2)
        # Its own legend patch, as pale as the band, was lost on the legend's white: the
        # same fill, outlined in the hull's colour.
        setattr(band, LEGEND_HANDLE, Patch(facecolor=band.get_facecolor()[0],
                                           edgecolor=color, linewidth=0.8))


# Longer labels (compare's groups name their config differences) would cover the data:
# their legend goes below the axes, each label wrapped at LEGEND_WRAP characters.
LEGEND_INSIDE_CHARS = 40
LEGEND_WRAP = 80


def legend(ax: Axes) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    handles = [getattr(h, LEGEND_HANDLE, h) for h in handles]
    style = dict(fontsize=FONT - 1, framealpha=0.85, handlelength=1.5, borderpad=0.3,
                 labelspacing=0.25, handler_map={tuple: HandlerTuple(ndivide=None)})
    if max(map(len, labels)) <= LEGEND_INSIDE_CHARS:
        ax.legend(handles, labels, loc="best", **style)
    else:
        ax.legend(handles, [textwrap.fill(label, LEGEND_WRAP) for label in labels],
                  loc="upper center", bbox_to_anchor=(0.5, -0.2), **style)


# ------------------------------------------------------------------ per stage

def search_figures(eps: float, cost_key: str = "macs", kinds: Kinds = KINDS):
    """What the search stage draws: frontier, pool, seeds and, once there are results,
    the hypervolume curve; `snapshot` is a report.state.Snapshot."""
    def draw(run_dir: Path, snapshot) -> None:
        rows, band = snapshot.rows, snapshot.band_ids
        save(frontier_figure(rows, band, eps, cost_key=cost_key,
                             title=f"Search: {len(rows)} models, {len(band)} in the gallery",
                             kinds=kinds),
             run_dir / "frontier")
        save(pool_figure(rows, band, kinds), run_dir / "pool")
        if seed_rows(rows, kinds):
            save(seeds_figure(rows, cost_key, kinds), run_dir / "seeds")
        if snapshot.hv_rows:
            save(hypervolume_figure(snapshot.hv_rows), run_dir / "hypervolume")
    return draw


def eval_figures(eps: float, cost_key: str, reference_rows: Sequence[dict],
                 kinds: Kinds = KINDS):
    """What the eval stage draws: its frontier, with the search's beside it."""
    def draw(eval_dir: Path, snapshot) -> None:
        save(eval_frontier_figure(snapshot.rows, eps, cost_key=cost_key,
                                  title=f"Eval: {len(snapshot.rows)} models",
                                  reference_rows=reference_rows, kinds=kinds),
             eval_dir / "frontier")
    return draw
