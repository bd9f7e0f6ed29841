"""Pictures of a model's cells: `<stem>_normal.{png,pdf}` and `<stem>_reduce.{png,pdf}`.

Left to right: inputs c_{k-2}, c_{k-1}, nodes, output c_{k} (it concatenates every node);
edges carry ops; a title names model and cell kind. The first meta["seed"]["nodes"] nodes
(build_seed sets it; growth and build_eval keep it) are seed nodes, blue squares; grown are
orange circles. graphviz draws if its package and `dot` are there; else matplotlib: arrange().
"""

from __future__ import annotations

import io
import re
import shutil
from collections import namedtuple
from importlib.util import find_spec
from pathlib import Path
from typing import Callable

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch
from matplotlib.path import Path as CurvePath

from petrinas.errors import InputError
from petrinas.fileio import write_bytes_atomic
from petrinas.model_desc.desc import CellDesc, ModelDesc, no_such_model_folder

CELL_KINDS = {"normal": "normal cell", "reduce": "reduction cell"}
FORMATS, DPI = ("png", "pdf"), 200
OP_FONT, NODE_FONT, TITLE_FONT = 7.5, 9, 10                # points
IO_HALF, NODE_HALF = (0.27, 0.15), (0.16, 0.16)            # half sizes, inches
COL_GAP, ROW_GAP, VERTEX_PAD, SWEEPS = 0.35, 0.12, 0.2, 4  # inches; sweeps: _heights()
# Fill and outline by kind; seed blue and grown orange as in the frontier plot.
STYLE = {"input": ("#eeeeee", "#555555"), "output": ("#eeeeee", "#555555"),
         "seed": ("#c6dbef", "#1f77b4"), "grown": ("#fdd0a2", "#e6550d"),
         "node": ("#ffffff", "#444444")}
KEY = {"seed": "seed node", "grown": "node added by growth"}
TEX = {"s0": r"$c_{k-2}$", "s1": r"$c_{k-1}$", "out": r"$c_{k}$"}


def draw_folder(path: str | Path, stem: str | Path | None = None, backend: str = "auto",
                say: Callable[[str], None] | None = None) -> list[Path]:
    """Draw the model in `path` (a folder holding desc.yaml, or the file), titled with the
    folder's name; by default to `<folder>/cell_*`. `say` hears of a cell not drawn."""
    path = Path(path)
    desc_path = path / "desc.yaml" if path.is_dir() else path
    if not path.exists():
        raise no_such_model_folder(path)
    if not desc_path.is_file():
        raise InputError(f"{desc_path}: missing (a model folder holds desc.yaml)")
    try:
        desc = ModelDesc.load(desc_path)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    folder = desc_path.resolve().parent
    return draw_cells(desc, folder / "cell" if stem is None else stem, backend, folder.name,
                      say)


def draw_cells(desc: ModelDesc, stem: str | Path, backend: str = "auto",
               name: str | None = None, say: Callable[[str], None] | None = None
               ) -> list[Path]:
    """Write the cells as PNG and PDF; backend "graphviz", "matplotlib" or "auto". A model
    without reduction cells never runs its reduction cell (its desc still holds one), so
    that cell is not drawn: a picture of it would pass for part of the model."""
    if backend == "auto":
        backend = "graphviz" if graphviz_available() else "matplotlib"
    renders = {"graphviz": _render_graphviz, "matplotlib": _render_matplotlib}
    if backend not in renders:
        raise ValueError(f"unknown backend {backend!r}")
    stem, written = Path(stem), []
    for kind, words in CELL_KINDS.items():
        if kind == "reduce" and desc.reductions == 0:
            if say is not None:
                say(f"{name or 'the model'}: {words} not drawn: the model has 0 "
                    "reduction cells")
            continue
        cell = getattr(desc, kind)
        for fmt, data in renders[backend](cell, f"{name}: {words}" if name else words,
                                node_kinds(desc, cell)).items():
            written.append(stem.with_name(f"{stem.name}_{kind}.{fmt}"))
            write_bytes_atomic(written[-1], data)
    return written


def graphviz_available() -> bool:
    return find_spec("graphviz") is not None and shutil.which("dot") is not None


Edge = namedtuple("Edge", "src dst op")  # s0, s1 or n<k> -> n<k> or out; op "" into out


def cell_edges(cell: CellDesc) -> list[Edge]:
    """The op edges of the cell, then one unlabelled edge from every node to the output."""
    key = lambda s: f"s{s}" if s < 2 else f"n{s - 2}"  # noqa: E731
    edges = [Edge(key(e.input), f"n{k}", e.op.name)
             for k, node in enumerate(cell.nodes) for e in node.edges]
    return edges + [Edge(f"n{k}", "out", "") for k in range(len(cell.nodes))]


def node_kinds(desc: ModelDesc, cell: CellDesc) -> dict[str, str]:
    """Vertex -> "input", "output", "seed" or "grown" (the first meta["seed"]["nodes"]
    nodes are the seed's), or "node" when the description does not say."""
    seeds = (desc.meta.get("seed") or {}).get("nodes")
    nodes = {f"n{k}": "node" if seeds is None else "seed" if k < int(seeds) else "grown"
             for k in range(len(cell.nodes))}
    return {"s0": "input", "s1": "input", **nodes, "out": "output"}


# ------------------------------------------------- matplotlib: the layout (pure)

def half(key: str) -> tuple[float, float]:
    return IO_HALF if key in TEX else NODE_HALF


def label_half(op: str) -> tuple[float, float]:
    """Half width and height of an op label with its white pad: monospace, 0.6 em."""
    return (0.6 * OP_FONT * len(op) / 72 + 0.05) / 2, (OP_FONT / 72 + 0.04) / 2


def spread(want: list[float], gaps: list[float]) -> np.ndarray:
    """Heights y closest to `want` (least squares) with y[i] - y[i+1] >= gaps[i]: with
    z = y + cumsum(gaps), z must not rise, an isotonic regression (pool adjacent violators)."""
    offsets = np.concatenate([[0.0], np.cumsum(gaps)])
    blocks: list[list[float]] = []  # [mean, count]
    for z in np.asarray(want, float) + offsets:
        blocks.append([z, 1])
        while len(blocks) > 1 and blocks[-2][0] < blocks[-1][0]:
            (z2, n2), (z1, n1) = blocks.pop(), blocks.pop()
            blocks.append([(z1 * n1 + z2 * n2) / (n1 + n2), n1 + n2])
    return np.repeat([b[0] for b in blocks], [int(b[1]) for b in blocks]) - offsets


Layout = namedtuple("Layout", "xy edges paths labels")  # per edge: points, label centre


def _heights(slots: list[list[str]], box: dict, chains: list[list[str]]) -> dict:
    """Sweeps left to right: each slot sorted by, and spread as close as it can to, the
    mean height of what its items read and (after the first sweep) feed."""
    pairs = [(a, b) for c in chains for a, b in zip(c, c[1:])]  # b follows a on an edge
    ins = {k: [a for a, b in pairs if b == k] for k in box}   # what k reads
    outs = {k: [b for a, b in pairs if a == k] for k in box}  # what k feeds
    y: dict[str, float] = {}
    for _ in range(SWEEPS):
        old = dict(y)
        for slot in slots:
            near = {k: [y[r] for r in ins[k]] + [old[f] for f in outs[k] if old] for k in slot}
            want = {k: float(np.mean(v)) if v else 0.0 for k, v in near.items()}
            slot.sort(key=lambda k: -want[k])  # stable: ties keep s0 over s1, nodes in order
            gaps = [(box[a][1] + box[b][1]) / 2 + ROW_GAP for a, b in zip(slot, slot[1:])]
            y.update(zip(slot, spread([want[k] for k in slot], gaps)))
    return y


def arrange(cell: CellDesc) -> Layout:
    """Slot 2d holds the vertices of depth d (longest path from the inputs), so edges point
    right; slot 2d+1 holds, for each edge that passes, its op label if it feeds a node of
    slot 2d+2, else a waypoint. Items are stacked by _heights, so labels overlap nothing.
    Edges run level through a slot and bend between slots."""
    edges, depth = cell_edges(cell), {"s0": 0, "s1": 0}
    for e in edges:  # in node order, and an edge reads an earlier state
        depth[e.dst] = max(depth.get(e.dst, 0), depth[e.src] + 1)
    col = {k: 2 * d for k, d in depth.items()}
    box = {k: (2 * half(k)[0], 2 * half(k)[1] + VERTEX_PAD) for k in depth}  # width, height
    chains = []  # each edge's items, source to destination
    for i, e in enumerate(edges):
        ways = {f"e{i}@{s}": s for s in range(col[e.src] + 1, col[e.dst])}
        col.update(ways)
        box.update({k: (0.0, 0.0) for k in ways})
        chains.append([e.src, *ways, e.dst])
        if e.op:
            box[chains[-1][-2]] = tuple(np.multiply(2, label_half(e.op)))
    slots = [[k for k in col if col[k] == s] for s in range(col["out"] + 1)]
    y = _heights(slots, box, chains)
    widths = [max(box[k][0] for k in slot) for slot in slots]
    xs = np.concatenate([[0.0], np.cumsum(np.add(widths[:-1], widths[1:]) / 2 + COL_GAP)])
    xy = {k: (xs[col[k]], y[k]) for k in depth}
    side = lambda k, sign: xs[col[k]] + sign * widths[col[k]] / 2  # noqa: E731
    paths = [np.array([(xy[c[0]][0] + half(c[0])[0], y[c[0]])]
                      + [(side(k, sign), y[k]) for k in c[1:-1] for sign in (-1, 1)]
                      + [(xy[c[-1]][0] - half(c[-1])[0], y[c[-1]])]) for c in chains]
    labels = [(side(c[-2], 1) - box[c[-2]][0] / 2, y[c[-2]]) if e.op else None
              for e, c in zip(edges, chains)]  # right-aligned in their slot
    return Layout(xy, edges, paths, labels)


def figure(cell: CellDesc, title: str, kinds: dict[str, str]) -> Figure:
    """The cell on a figure sized to fit it, one unit an inch; gids name artists for tests."""
    lay = arrange(cell)
    points = np.concatenate(lay.paths + [np.add(xy, np.multiply(half(k), [[-1], [1]]))
                                         for k, xy in lay.xy.items()])
    (x0, y0), (x1, y1) = points.min(axis=0) - 0.1, points.max(axis=0) + 0.1
    fig = Figure(figsize=(x1 - x0, y1 - y0))
    FigureCanvasAgg(fig)  # saved with a tight box, which takes in the title and the key
    ax = fig.add_axes((0, 0, 1, 1), xlim=(x0, x1), ylim=(y0, y1), aspect="equal")
    ax.set_axis_off()
    ax.set_title(title, fontsize=TITLE_FONT, gid="title")
    for k, (x, y) in lay.xy.items():
        (w, h), r = half(k), 0.06 if k in TEX else 0.02
        style = dict(facecolor=STYLE[kinds[k]][0], edgecolor=STYLE[kinds[k]][1], zorder=2,
                     linewidth=1.0, gid=kinds[k])  # grown nodes round, seed nodes square
        ax.add_patch(Circle((x, y), w, **style) if kinds[k] in ("grown", "node") else
                     FancyBboxPatch((x - w, y - h), 2 * w, 2 * h, **style,
                                    boxstyle=f"round,pad=0,rounding_size={r}"))
        ax.text(x, y, TEX.get(k, k[1:]), ha="center", va="center", fontsize=NODE_FONT)
    for e, points, label in zip(lay.edges, lay.paths, lay.labels):
        ax.add_patch(FancyArrowPatch(
            path=_smooth(points), arrowstyle="-|>", mutation_scale=8, linewidth=0.8,
            color="#333333" if e.op else "#9a9a9a", zorder=1, gid="edge"))
        if label is not None:
            ax.text(*label, e.op, ha="center", va="center", fontsize=OP_FONT, zorder=4,
                    family="monospace", gid="op", bbox=dict(
                        boxstyle="square,pad=0.15", facecolor="white", edgecolor="none"))
    if key := [k for k in KEY if k in kinds.values()]:
        ax.legend(handles=[Line2D([], [], linestyle="none", marker="s" if k == "seed"
                                  else "o", markersize=8, markerfacecolor=STYLE[k][0],
                                  markeredgecolor=STYLE[k][1], label=KEY[k]) for k in key],
                  loc="upper center", bbox_to_anchor=(0.5, 0), ncol=len(key), frameon=False)
    return fig


def _smooth(points: np.ndarray) -> CurvePath:
    """Cubic pieces through the points, level at each: an S-bend between slots."""
    verts = [points[0]] + [v for p, q in zip(points, points[1:])
                           for v in (((p[0] + q[0]) / 2, p[1]), ((p[0] + q[0]) / 2, q[1]), q)]
    return CurvePath(verts, [CurvePath.MOVETO] + [CurvePath.CURVE4] * (len(verts) - 1))


def _render_matplotlib(cell: CellDesc, title: str, kinds: dict[str, str]) -> dict[str, bytes]:
    fig, out = figure(cell, title, kinds), {fmt: io.BytesIO() for fmt in FORMATS}
    for fmt, buffer in out.items():  # no PDF creation date: a redrawn cell, the same bytes
        fig.savefig(buffer, format=fmt, dpi=DPI, bbox_inches="tight", pad_inches=0.05,
                    metadata={"CreationDate": None} if fmt == "pdf" else None)
    return {fmt: buffer.getvalue() for fmt, buffer in out.items()}


def _render_graphviz(cell: CellDesc, title: str, kinds: dict[str, str]) -> dict[str, bytes]:
    import graphviz
    key = "; ".join(f"{'square' if k == 'seed' else 'circle'}: {KEY[k]}"
                    for k in KEY if k in kinds.values())
    g = graphviz.Digraph(  # the output, which reads every node, is rightmost anyway
        graph_attr=dict(rankdir="LR", dpi=str(DPI), labelloc="t", fontname="Helvetica",
                        label=f"{title}\\n{key}" if key else title),
        node_attr=dict(fontname="Helvetica"),
        edge_attr=dict(fontname="Courier", fontsize="11", penwidth="0.9", arrowsize="0.7"))
    names = {"s0": "<c<sub>k-2</sub>>", "s1": "<c<sub>k-1</sub>>", "out": "<c<sub>k</sub>>"}
    with g.subgraph(graph_attr=dict(rank="source")) as inputs:  # both inputs leftmost
        for k, kind in kinds.items():
            shape = "box" if k in names else "square" if kind == "seed" else "circle"
            (inputs if kind == "input" else g).node(
                k, names.get(k, k[1:]), shape=shape, fillcolor=STYLE[kind][0],
                color=STYLE[kind][1], style="rounded,filled" if k in names else "filled")
    for e in cell_edges(cell):
        g.edge(e.src, e.dst, label=e.op, color="#333333" if e.op else "#9a9a9a")
    # cairo stamps the PDF with the time: a fixed stamp of the same length keeps the offsets.
    return {fmt: re.sub(rb"(?<=/CreationDate \(D:)\d{14}", b"20000101000000",
                        g.pipe(format=fmt)) for fmt in FORMATS}
