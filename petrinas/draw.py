"""Pictures of a model's cells for a paper figure.

`draw_cells(desc, stem)` writes `<stem>_normal.{png,pdf}` and `<stem>_reduce.{png,pdf}`:
a left-to-right DAG with the cell inputs c_{k-2}, c_{k-1}, the intermediate nodes 0..n-1
and the output c_{k}, each edge labelled with its op, and every node feeding the output
(the cell concatenates all nodes). A search-phase candidate node is not drawn.

With the `graphviz` package and its `dot` binary both present, graphviz lays the cell
out; otherwise matplotlib does, with its object API on an Agg canvas (no pyplot), as in
search/report.py. The matplotlib layout works in inches (1 data unit = 1 inch, figure
sized to fit) so that text sizes known in points can be checked against the geometry:

* nodes go in columns by depth (longest path from the inputs), so every edge points
  right; within a column, nodes are ordered by the mean height of their inputs;
* each edge is a quadratic arc (FancyArrowPatch, connectionstyle arc3) with its label
  on the arc in a white box; its curvature and the label's place along it are chosen
  from a grid of candidates by a cost: hard for a label on a label or a node and for an
  arc through an unrelated node, soft for crossings, arcs hidden under labels and
  strong curvature. Edges are placed greedily, then re-placed against all the others a
  few times; if hard conflicts remain, the columns and rows are spread wider and the
  routing is redone.
"""

from __future__ import annotations

import io
import shutil
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch
from matplotlib.textpath import TextToPath

from petrinas.errors import InputError
from petrinas.fileio import write_bytes_atomic
from petrinas.model_desc.desc import CellDesc, ModelDesc

CELL_KINDS = ("normal", "reduce")
FORMATS = ("png", "pdf")
DPI = 200

# Sizes in inches (the figure's data unit) and points (fonts).
LABEL_FONT = 8
NODE_FONT = 9
NODE_RADIUS = 0.17            # intermediate nodes: circles
BOX = (0.52, 0.3)             # cell inputs and output: rounded boxes (width, height)
ROW_GAP = 0.8                 # between node centres within a column
MIN_COL_GAP = 1.2
LABEL_PAD = 0.035             # white box around an edge label
CLEARANCE = 0.06              # kept free around nodes and labels

INPUT_COLOR, NODE_COLOR, OUTPUT_COLOR = "#cfe3f5", "#fde9c4", "#d4edd0"
EDGE_COLOR, OUTPUT_EDGE_COLOR = "#333333", "#9a9a9a"
# Candidate curvatures (arc3 rad) and label positions (Bezier parameter t).
RADS = (0.0, 0.1, -0.1, 0.2, -0.2, 0.3, -0.3, 0.4, -0.4, 0.55, -0.55)
LABEL_TS = (0.5, 0.4, 0.6, 0.3, 0.7)
HARD = 1000.0                 # cost of a label overlap or an arc through a node
CROSSING_WINDOW = 12.0        # routes within this of the best also get crossings counted
GROW = np.array([-1.0, -1.0, 1.0, 1.0])  # times a margin: grows an (x0, y0, x1, y1) rect
# (column, row) gap multipliers tried in turn until labels and arcs fit.
SPREADS = ((1.0, 1.0), (1.3, 1.0), (1.3, 1.3), (1.6, 1.4), (2.0, 1.6))


@dataclass(frozen=True)
class Vertex:
    key: str                  # "s0", "s1", "n<k>", "out"
    label: str                # mathtext for matplotlib
    shape: str                # "box" or "circle"
    xy: tuple[float, float]

    @property
    def half(self) -> tuple[float, float]:
        """Half width and height of the bounding box."""
        if self.shape == "circle":
            return NODE_RADIUS, NODE_RADIUS
        return BOX[0] / 2, BOX[1] / 2


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    label: str                # op name; "" for the edges into the output


@dataclass(frozen=True)
class Route:
    rad: float
    label_t: float


# ----------------------------------------------------------------------- public API

def draw_folder(path: str | Path, stem: str | Path | None = None,
                backend: str = "auto") -> list[Path]:
    """Draw the cells of the model in `path` (a folder holding desc.yaml, or the file);
    the default stem is `<folder>/cell`. Returns the files written."""
    path = Path(path)
    desc_path = path / "desc.yaml" if path.is_dir() else path
    if not path.exists():
        raise InputError(f"{path}: no such model folder")
    if not desc_path.is_file():
        raise InputError(f"{desc_path}: missing (a model folder holds desc.yaml)")
    try:
        desc = ModelDesc.load(desc_path)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return draw_cells(desc, Path(stem) if stem is not None else desc_path.parent / "cell",
                      backend=backend)


def draw_cells(desc: ModelDesc, stem: str | Path, backend: str = "auto") -> list[Path]:
    """Write `<stem>_normal.{png,pdf}` and `<stem>_reduce.{png,pdf}`.

    backend: "graphviz", "matplotlib", or "auto" (graphviz when the package and the
    `dot` binary are both available)."""
    if backend == "auto":
        backend = "graphviz" if graphviz_available() else "matplotlib"
    if backend not in ("graphviz", "matplotlib"):
        raise ValueError(f"unknown backend {backend!r}")
    render = _render_graphviz if backend == "graphviz" else _render_matplotlib
    stem = Path(stem)
    written = []
    for kind in CELL_KINDS:
        for fmt, data in render(getattr(desc, kind)).items():
            path = stem.with_name(f"{stem.name}_{kind}.{fmt}")
            write_bytes_atomic(path, data)
            written.append(path)
    return written


def graphviz_available() -> bool:
    try:
        import graphviz  # noqa: F401
    except ImportError:
        return False
    return shutil.which("dot") is not None


# ------------------------------------------------------------------- cell as a graph

def cell_edges(cell: CellDesc) -> list[Edge]:
    """The op edges of the cell, then one unlabelled edge from every node to the output."""
    edges = [Edge(_state_key(e.input), f"n{k}", e.op.name)
             for k, node in enumerate(cell.nodes) for e in node.edges]
    return edges + [Edge(f"n{k}", "out", "") for k in range(len(cell.nodes))]


def _state_key(state: int) -> str:
    return f"s{state}" if state < 2 else f"n{state - 2}"


def _depths(cell: CellDesc) -> dict[str, int]:
    """Column of every vertex: the longest path from the inputs (edges read earlier
    states only, so one pass in node order suffices)."""
    depth = {"s0": 0, "s1": 0}
    for k, node in enumerate(cell.nodes):
        depth[f"n{k}"] = 1 + max(depth[_state_key(e.input)] for e in node.edges)
    depth["out"] = 1 + max(depth[f"n{k}"] for k in range(len(cell.nodes)))
    return depth


# --------------------------------------------------------------------------- layout

def layout(cell: CellDesc, col_scale: float = 1.0, row_scale: float = 1.0
           ) -> dict[str, Vertex]:
    """Vertex positions in inches: columns by depth, rows centred on y = 0; the gaps
    are multiplied by the scales."""
    depth = _depths(cell)
    col_gap = col_scale * max(MIN_COL_GAP, _max_label_width(cell) + 2 * NODE_RADIUS + 0.25)
    row_gap = row_scale * ROW_GAP
    columns: dict[int, list[str]] = {}
    for key, d in depth.items():
        columns.setdefault(d, []).append(key)
    inputs = {f"n{k}": [_state_key(e.input) for e in n.edges]
              for k, n in enumerate(cell.nodes)}
    ys: dict[str, float] = {}
    for d in sorted(columns):
        keys = columns[d]
        if d > 0 and "out" not in keys:
            # Barycentre order, top (high y) first: a node sits level with the states
            # it reads, which saves crossings.
            keys.sort(key=lambda k: (-np.mean([ys[i] for i in inputs[k]]), int(k[1:])))
        for row, key in enumerate(keys):  # s0 above s1, then top to bottom
            ys[key] = ((len(keys) - 1) / 2 - row) * row_gap
    return {key: _vertex(key, (depth[key] * col_gap, ys[key])) for key in depth}


def _vertex(key: str, xy: tuple[float, float]) -> Vertex:
    labels = {"s0": r"$c_{k-2}$", "s1": r"$c_{k-1}$", "out": r"$c_{k}$"}
    if key in labels:
        return Vertex(key, labels[key], "box", xy)
    return Vertex(key, key[1:], "circle", xy)


def _text_size(text: str, size: float) -> tuple[float, float]:
    """Width and height of `text` in inches, without a renderer."""
    w, h, _ = TextToPath().get_text_width_height_descent(
        text, FontProperties(size=size), ismath=False)
    return w / 72, h / 72


def _max_label_width(cell: CellDesc) -> float:
    names = [e.op.name for n in cell.nodes for e in n.edges]
    return max(_text_size(name, LABEL_FONT)[0] for name in names)


# -------------------------------------------------------------------------- routing

def bezier(p0: np.ndarray, p2: np.ndarray, rad, t) -> np.ndarray:
    """Points of matplotlib's arc3 curve from p0 to p2: a quadratic Bezier whose control
    point is `rad` times the chord length off the chord's midpoint (valid in data units
    because the figure keeps 1 unit = 1 inch in x and y). `rad` and `t` broadcast like
    numpy arrays; the result has a trailing axis of 2 (x, y)."""
    d = p2 - p0
    rad = np.asarray(rad, dtype=float)[..., None]
    t = np.asarray(t, dtype=float)[..., None]
    control = (p0 + p2) / 2 + rad * np.array([d[1], -d[0]])
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * control + t ** 2 * p2


def _rect(center: np.ndarray, half: tuple[float, float]) -> np.ndarray:
    return np.array([center[0] - half[0], center[1] - half[1],
                     center[0] + half[0], center[1] + half[1]])


def _overlaps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Overlap areas of rects `a` (A x 4: x0, y0, x1, y1) with rects `b` (B x 4): A x B."""
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def _inside(points: np.ndarray, rects: np.ndarray) -> np.ndarray:
    """Whether each of `points` (... x 2) lies inside each of `rects` (R x 4):
    ... x R booleans."""
    x, y = points[..., None, 0], points[..., None, 1]
    return (x > rects[:, 0]) & (x < rects[:, 2]) & (y > rects[:, 1]) & (y < rects[:, 3])


def _crossings(curves: np.ndarray, others: np.ndarray) -> np.ndarray:
    """For each polyline in `curves` (O x P x 2), how often it crosses the polylines
    `others` (K x Q x 2)."""
    a0, a1 = curves[:, :-1, None], curves[:, 1:, None]              # O x S x 1 x 2
    b0 = others[:, :-1].reshape(1, 1, -1, 2)                         # 1 x 1 x T x 2
    b1 = others[:, 1:].reshape(1, 1, -1, 2)

    def cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]

    da, db = a1 - a0, b1 - b0
    straddle_a = cross(da, b0 - a0) * cross(da, b1 - a0) < 0
    straddle_b = cross(db, a0 - b0) * cross(db, a1 - b0) < 0
    return np.count_nonzero(straddle_a & straddle_b, axis=(1, 2))


@dataclass(frozen=True)
class _Shapes:
    """The geometry of some candidate routes of one edge, for scoring."""
    curves: np.ndarray                # O x SAMPLES x 2
    labels: np.ndarray | None         # O x 4 label rects; None for an unlabelled edge


class _Router:
    """Chooses each edge's curvature and label position against everything else that is
    placed: nodes, the other edges' labels and arcs.

    A greedy pass places the edges one by one; repair passes then re-place each edge
    against all the others, which lets an edge placed early step aside for a later one.
    All candidate routes of an edge are scored at once, as arrays.
    """

    SAMPLES = np.linspace(0.04, 0.96, 40)
    COARSE = 4  # every COARSE-th sample is enough to count crossings, and much cheaper
    REPAIR_PASSES = 3

    def __init__(self, vertices: dict[str, Vertex]):
        self.vertices = vertices
        self.keys = list(vertices)
        self.node_rects = np.array([_rect(np.array(v.xy), v.half) for v in vertices.values()])
        self._sizes: dict[str, tuple[float, float]] = {}  # label -> text size (inches)

    def route(self, edges: list[Edge], order: list[int]) -> tuple[list[Route], int]:
        """Routes of `edges` (placed in `order`) and how many of them could not avoid a
        label overlap or an arc through a node."""
        placed: dict[int, tuple[Route, _Shapes]] = {}
        for _ in range(1 + self.REPAIR_PASSES):
            changed = False
            for i in order:
                previous = placed.pop(i, None)
                route = self._best(edges[i], placed)
                placed[i] = (route, self._shapes(edges[i], [route]))
                changed |= previous is None or previous[0] != route
            if not changed:
                break
        conflicts = sum(
            self._costs(edges[i], [placed[i][0]], _others(placed, skip=i))[0] >= HARD
            for i in order)
        return [placed[i][0] for i in range(len(edges))], conflicts

    def label_rect(self, edge: Edge, route: Route) -> np.ndarray:
        return self._shapes(edge, [route]).labels[0]

    def _ends(self, edge: Edge) -> tuple[np.ndarray, np.ndarray]:
        return np.array(self.vertices[edge.src].xy), np.array(self.vertices[edge.dst].xy)

    def _shapes(self, edge: Edge, routes: list[Route]) -> _Shapes:
        p0, p2 = self._ends(edge)
        rads = np.array([r.rad for r in routes])
        curves = bezier(p0, p2, rads[:, None], self.SAMPLES)
        if not edge.label:
            return _Shapes(curves, None)
        if edge.label not in self._sizes:  # measuring text is slow; labels repeat
            self._sizes[edge.label] = _text_size(edge.label, LABEL_FONT)
        w, h = self._sizes[edge.label]
        centers = bezier(p0, p2, rads, np.array([r.label_t for r in routes]))
        half = np.array([w / 2 + LABEL_PAD, h / 2 + LABEL_PAD])
        return _Shapes(curves, np.hstack([centers - half, centers + half]))

    def _best(self, edge: Edge, placed: dict) -> Route:
        options = [Route(rad, t) for rad, t in product(RADS, LABEL_TS if edge.label else (0.5,))]
        return options[int(np.argmin(self._costs(edge, options, _others(placed))))]

    def _costs(self, edge: Edge, routes: list[Route], others: _Shapes) -> np.ndarray:
        """The cost of each route: HARD per label overlap or arc through a node, plus
        soft terms for crossings, hidden arcs, curvature and off-centre labels; infinite
        for a route that is clearly worse than the best before crossings count."""
        mine = self._shapes(edge, routes)
        # Straight arcs and centred labels read best; these terms only break ties.
        cost = np.array([3 * abs(r.rad) + 2 * abs(r.label_t - 0.5) for r in routes])
        apart = [i for i, k in enumerate(self.keys) if k not in (edge.src, edge.dst)]
        grown_nodes = self.node_rects + CLEARANCE * GROW
        through = _inside(mine.curves, grown_nodes[apart]).any(axis=1)     # O x N
        cost += HARD * through.sum(axis=1)                    # an arc through a node
        cost += 2 * _inside(mine.curves, others.labels).sum(axis=(1, 2))  # arc under label
        if mine.labels is not None:
            box = mine.labels
            area = ((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1]))[:, None]
            on_nodes = _overlaps(box, grown_nodes) / area
            on_labels = _overlaps(box, others.labels + CLEARANCE * GROW) / area
            cost += HARD * np.count_nonzero(on_nodes, axis=1) + 100 * on_nodes.sum(axis=1)
            cost += HARD * np.count_nonzero(on_labels, axis=1) + 100 * on_labels.sum(axis=1)
            # A label over another arc: worst at a crossing, where it reads as either's.
            cost += 3 * _inside(others.curves.reshape(-1, 2), box).sum(axis=0)
        # Crossings are the costly term to count, so they are counted only for routes
        # within CROSSING_WINDOW of the best; the others drop out (infinite cost).
        close = cost <= cost.min() + CROSSING_WINDOW
        if len(others.curves):
            cost[close] += 2 * _crossings(mine.curves[close, ::self.COARSE],
                                          others.curves[:, ::self.COARSE])
        cost[~close] = np.inf
        return cost


def _others(placed: dict, skip: int | None = None) -> _Shapes:
    """All placed curves (K x SAMPLES x 2) and label rects (L x 4), but those of `skip`."""
    shapes = [sh for i, (_, sh) in placed.items() if i != skip]
    curves = [sh.curves for sh in shapes]
    labels = [sh.labels for sh in shapes if sh.labels is not None]
    return _Shapes(
        np.concatenate(curves) if curves else np.zeros((0, len(_Router.SAMPLES), 2)),
        np.concatenate(labels) if labels else np.zeros((0, 4)))


def route_edges(vertices: dict[str, Vertex], edges: list[Edge]
                ) -> tuple[list[Route], int]:
    """The route of every edge and the number of unavoidable conflicts. Op edges go
    first, shortest (in x) first, so simple edges stay straight and long ones bend
    around them; the output edges come last."""
    span = lambda e: vertices[e.dst].xy[0] - vertices[e.src].xy[0]  # noqa: E731
    order = sorted(range(len(edges)), key=lambda i: (not edges[i].label, span(edges[i]), i))
    return _Router(vertices).route(edges, order)


def arrange(cell: CellDesc) -> tuple[dict[str, Vertex], list[tuple[Edge, Route]]]:
    """Layout and routes, spreading the layout until nothing conflicts (or the widest
    spread, if conflicts remain there too, keeps the fewest)."""
    edges = cell_edges(cell)
    best = None
    for spread in SPREADS:
        vertices = layout(cell, *spread)
        routes, conflicts = route_edges(vertices, edges)
        if best is None or conflicts < best[0]:
            best = (conflicts, vertices, routes)
        if conflicts == 0:
            break
    _, vertices, routes = best
    return vertices, list(zip(edges, routes))


# ----------------------------------------------------------------------- matplotlib

def label_boxes(vertices: dict[str, Vertex], routed: list[tuple[Edge, Route]]
                ) -> list[tuple[Edge, np.ndarray]]:
    """Each labelled edge with the box (x0, y0, x1, y1, inches) its label occupies."""
    router = _Router(vertices)
    return [(edge, router.label_rect(edge, route)) for edge, route in routed if edge.label]


def _render_matplotlib(cell: CellDesc) -> dict[str, bytes]:
    vertices, routed = arrange(cell)
    boxes = label_boxes(vertices, routed)
    fig = _figure(_bounds(vertices, routed, [box for _, box in boxes]))
    ax = fig.axes[0]
    patches = {k: _add_vertex(ax, v) for k, v in vertices.items()}
    for edge, route in routed:
        _add_arc(ax, edge, route, vertices, patches)
    for edge, box in boxes:
        ax.text((box[0] + box[2]) / 2, (box[1] + box[3]) / 2, edge.label, ha="center",
                va="center", fontsize=LABEL_FONT, zorder=4,
                bbox=dict(boxstyle=f"square,pad={LABEL_PAD * 72 / LABEL_FONT:.3f}",
                          facecolor="white", edgecolor="none"))
    return {fmt: _savefig(fig, fmt) for fmt in FORMATS}


def _bounds(vertices: dict[str, Vertex], routed: list[tuple[Edge, Route]],
            boxes: list[np.ndarray]) -> np.ndarray:
    """(xmin, ymin, xmax, ymax) of nodes, arcs and labels, plus a margin."""
    rects = [_rect(np.array(v.xy), v.half) for v in vertices.values()] + boxes
    for edge, route in routed:
        p0, p2 = np.array(vertices[edge.src].xy), np.array(vertices[edge.dst].xy)
        pts = bezier(p0, p2, route.rad, _Router.SAMPLES)
        rects.append(np.array([*pts.min(axis=0), *pts.max(axis=0)]))
    stacked = np.array(rects)
    margin = 0.08
    return np.array([stacked[:, 0].min() - margin, stacked[:, 1].min() - margin,
                     stacked[:, 2].max() + margin, stacked[:, 3].max() + margin])


def _figure(bounds: np.ndarray) -> Figure:
    """A figure exactly the size of `bounds` in inches, with one axes filling it, so one
    data unit is one inch in both directions (what the router's geometry assumes)."""
    width, height = bounds[2] - bounds[0], bounds[3] - bounds[1]
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(bounds[0], bounds[2])
    ax.set_ylim(bounds[1], bounds[3])
    ax.set_aspect("equal")
    ax.axis("off")
    return fig


def _add_vertex(ax, vertex: Vertex):
    x, y = vertex.xy
    if vertex.shape == "circle":
        patch = Circle((x, y), NODE_RADIUS, facecolor=NODE_COLOR, edgecolor="#444444",
                       linewidth=0.8, zorder=2)
    else:
        color = OUTPUT_COLOR if vertex.key == "out" else INPUT_COLOR
        w, h = BOX
        patch = FancyBboxPatch((x - w / 2, y - h / 2), w, h,
                               boxstyle="round,pad=0,rounding_size=0.06",
                               facecolor=color, edgecolor="#444444", linewidth=0.8,
                               zorder=2)
    ax.add_patch(patch)
    ax.text(x, y, vertex.label, ha="center", va="center", fontsize=NODE_FONT, zorder=3)
    return patch


def _add_arc(ax, edge: Edge, route: Route, vertices: dict[str, Vertex],
             patches: dict) -> None:
    # Clipped to the node patches, so arrows start and end at the node outlines.
    ax.add_patch(FancyArrowPatch(
        vertices[edge.src].xy, vertices[edge.dst].xy,
        connectionstyle=f"arc3,rad={route.rad}", arrowstyle="-|>", mutation_scale=8,
        linewidth=0.8, color=EDGE_COLOR if edge.label else OUTPUT_EDGE_COLOR,
        patchA=patches[edge.src], patchB=patches[edge.dst], shrinkA=1, shrinkB=1,
        zorder=1))


def _savefig(fig: Figure, fmt: str) -> bytes:
    buffer = io.BytesIO()
    # No creation date in the PDF: redrawing an unchanged cell gives the same bytes.
    metadata = {"CreationDate": None} if fmt == "pdf" else None
    fig.savefig(buffer, format=fmt, dpi=DPI, metadata=metadata)
    return buffer.getvalue()


# ------------------------------------------------------------------------- graphviz

GRAPHVIZ_LABELS = {"s0": "<c<sub>k-2</sub>>", "s1": "<c<sub>k-1</sub>>",
                   "out": "<c<sub>k</sub>>"}


def _render_graphviz(cell: CellDesc) -> dict[str, bytes]:
    import graphviz

    g = graphviz.Digraph(
        graph_attr=dict(rankdir="LR", nodesep="0.3", ranksep="0.5", dpi=str(DPI)),
        node_attr=dict(fontname="Helvetica", fontsize=str(NODE_FONT + 2), penwidth="0.8",
                       style="filled"),
        edge_attr=dict(fontname="Helvetica", fontsize=str(LABEL_FONT + 2),
                       penwidth="0.8", arrowsize="0.6"))
    with g.subgraph(graph_attr=dict(rank="source")) as inputs:  # both inputs leftmost
        for key in ("s0", "s1"):
            inputs.node(key, GRAPHVIZ_LABELS[key], shape="box", style="rounded,filled",
                        fillcolor=INPUT_COLOR)
    for k in range(len(cell.nodes)):
        g.node(f"n{k}", str(k), shape="circle", fillcolor=NODE_COLOR)
    with g.subgraph(graph_attr=dict(rank="sink")) as output:  # the output rightmost
        output.node("out", GRAPHVIZ_LABELS["out"], shape="box", style="rounded,filled",
                    fillcolor=OUTPUT_COLOR)
    for edge in cell_edges(cell):
        if edge.label:
            g.edge(edge.src, edge.dst, label=edge.label, color=EDGE_COLOR)
        else:
            g.edge(edge.src, edge.dst, color=OUTPUT_EDGE_COLOR)
    return {fmt: g.pipe(format=fmt) for fmt in FORMATS}
