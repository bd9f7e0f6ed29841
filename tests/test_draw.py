"""Tests for petrinas.draw and scripts/draw.py.

What a reader sees is checked on the layout and on the figure's artists, never on
rendered pixels, so no test depends on the fonts installed: vertices in columns by depth,
edges that point right, labels that overlap nothing and sit on their edges just before the
node they feed, one arrow per edge, the op names, the title, and seed nodes that look
unlike grown ones. Files are then checked to exist and to be valid images.
"""

from __future__ import annotations

import functools
import io
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.image import imread
from matplotlib.patches import Circle, FancyArrowPatch

import petrinas.draw as draw
from petrinas.cli import draw_main
from petrinas.config_loader import load_config
from petrinas.draw import (
    arrange,
    cell_edges,
    draw_cells,
    draw_folder,
    figure,
    graphviz_available,
    half,
    label_half,
    node_kinds,
    spread,
)
from petrinas.model_desc import build_seed
from petrinas.model_desc.builder import build_eval, seed_cell
from petrinas.model_desc.desc import ModelDesc
from petrinas.model_desc.grow import add_candidate, finalize
from petrinas.model_desc.model import build_model

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")  # _grown builds models: see conftest.py
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def config():
    return load_config("petridish_digits", ["model.init_channels=4"])


@functools.cache
def _grown(seed: int = 3, rounds: int = 3) -> ModelDesc:
    """A digits seed (2 nodes) grown `rounds` times the way the search does it: a
    candidate reading every state, then its top-3 (input, op) pairs by |alpha| kept as a
    node. The alphas are random, so normal and reduction cells pick different edges."""
    config = load_config("petridish_digits", ["model.init_channels=4"])
    desc = build_seed(config, cells=3, reductions=1, nodes=2)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(rounds):
        desc = add_candidate(desc, config.model.candidate_ops)
        state = build_model(desc).state_dict()
        for key in state:
            if key.endswith("candidate.alpha"):
                state[key] = torch.rand(state[key].shape, generator=gen)
        desc, _ = finalize(desc, state, 3)
    return desc


@pytest.fixture(scope="module")
def grown() -> ModelDesc:
    return _grown()


def _hand_desc(nodes: int = 1, meta: dict | None = None) -> ModelDesc:
    cell = seed_cell(nodes, "sep_conv_3x3")
    return ModelDesc(cells=3, reductions=1, init_channels=4, stem_multiplier=1,
                     num_classes=10, input_shape=(1, 8, 8), normal=cell, reduce=cell,
                     meta=meta or {})


# ------------------------------------------------------------------- the cell as a graph

def test_cell_edges_feed_output():
    edges = cell_edges(seed_cell(3, "sep_conv_3x3"))
    assert [tuple(e) for e in edges] == [
        ("s1", "n0", "sep_conv_3x3"), ("s0", "n0", "skip_connect"),
        ("n0", "n1", "sep_conv_3x3"), ("n1", "n2", "sep_conv_3x3"),
        ("n0", "out", ""), ("n1", "out", ""), ("n2", "out", "")]


def test_seed_nodes_come_first_and_survive_growth_and_eval(config, grown):
    assert grown.nodes == 5 and all(len(n.edges) == 3 for n in grown.normal.nodes[2:])
    kinds = node_kinds(grown, grown.normal)
    assert kinds == {"s0": "input", "s1": "input", "n0": "seed", "n1": "seed",
                     "n2": "grown", "n3": "grown", "n4": "grown", "out": "output"}
    assert node_kinds(build_eval(grown, config), grown.reduce) == kinds
    # A description that does not say how it was seeded claims neither.
    assert set(node_kinds(_hand_desc(2), _hand_desc(2).normal).values()) == {
        "input", "node", "output"}


# ------------------------------------------------------------------------- the layout

def test_spread_keeps_gaps_and_stays_closest():
    assert spread([0.0, 0.0], [1.0]) == pytest.approx([0.5, -0.5])
    assert spread([3.0, 0.0, -3.0], [1.0, 1.0]) == pytest.approx([3.0, 0.0, -3.0])
    # Only the clash moves, each side by half; the isolated item stays put.
    assert spread([1.0, 1.0, -5.0], [0.5, 0.5]) == pytest.approx([1.25, 0.75, -5.0])
    assert spread([0.0, 0.0, 5.0], [1.0, 1.0]) == pytest.approx([8 / 3, 5 / 3, 2 / 3])


def test_layout_of_the_one_node_seed_cell_exactly():
    """Columns: inputs, labels, node 0, the waypoint of its output edge, output; widths
    0.54, the longest label, 0.32, 0, 0.54, each 0.35 apart. The inputs are 0.5 + 0.12
    apart; each label is level with the mean of what it joins (its input and node 0)."""
    lay = arrange(seed_cell(1, "sep_conv_3x3"))
    label_w = 2 * label_half("sep_conv_3x3")[0]
    assert label_w == pytest.approx(0.6 * 7.5 * 12 / 72 + 0.05)
    x_label = 0.27 + 0.35 + label_w / 2
    x_node = 0.27 + 0.35 + label_w + 0.35 + 0.16
    x_out = x_node + 0.16 + 0.35 + 0.35 + 0.27
    assert list(lay.xy) == ["s0", "s1", "n0", "out"]
    assert np.array(list(lay.xy.values())) == pytest.approx(
        np.array([(0, 0.31), (0, -0.31), (x_node, 0), (x_out, 0)]))
    right = x_label + label_w / 2  # labels right-aligned just before node 0
    assert lay.labels[0] == pytest.approx((right - label_w / 2, -0.155))  # from s1
    assert lay.labels[1] == pytest.approx((right - label_half("skip_connect")[0], 0.155))
    assert lay.labels[2] is None


def _depths(edges) -> dict[str, int]:
    depth = {"s0": 0, "s1": 0}
    for e in edges:
        depth[e.dst] = max(depth.get(e.dst, 0), depth[e.src] + 1)
    return depth


def _box(center, halfsize) -> np.ndarray:
    return np.array([center[0] - halfsize[0], center[1] - halfsize[1],
                     center[0] + halfsize[0], center[1] + halfsize[1]])


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.mark.parametrize("seed", [3, 4, 5])
@pytest.mark.parametrize("kind", ["normal", "reduce"])
def test_layout_of_grown_digits_cells(kind: str, seed: int):
    """Columns by depth, edges pointing right, nothing on top of anything, and each op
    label on its own edge just before the node it feeds."""
    cell = getattr(_grown(seed), kind)
    lay = arrange(cell)
    depth = _depths(lay.edges)
    columns = {}
    for key, (x, _) in lay.xy.items():
        columns.setdefault(depth[key], set()).add(x)
    assert all(len(xs) == 1 for xs in columns.values())  # one x per depth
    xs = [columns[d].pop() for d in sorted(columns)]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    vertices = [_box(xy, half(k)) for k, xy in lay.xy.items()]
    labels = [_box(c, label_half(e.op)) for e, c in zip(lay.edges, lay.labels) if c]
    assert len(labels) == sum(len(n.edges) for n in cell.nodes)
    boxes = vertices + labels
    for i, a in enumerate(boxes):
        assert not any(_overlap(a, b) for b in boxes[i + 1:]), i
    for e, path, label in zip(lay.edges, lay.paths, lay.labels):
        src, dst = lay.xy[e.src], lay.xy[e.dst]
        assert np.all(np.diff(path[:, 0]) >= 0) and path[-1, 0] > path[0, 0]  # rightward
        assert path[0] == pytest.approx((src[0] + half(e.src)[0], src[1]))
        assert path[-1] == pytest.approx((dst[0] - half(e.dst)[0], dst[1]))
        if label is not None:  # on the level run of its edge just before the destination
            w = label_half(e.op)[0]
            assert path[-2] == pytest.approx((label[0] + w, label[1]))
            assert path[-3][1] == pytest.approx(label[1]) and path[-3][0] <= label[0] - w
            assert xs[depth[e.dst] - 1] < label[0] < dst[0]
    assert {e.src for e in lay.edges if e.dst == "out"} == {
        f"n{k}" for k in range(len(cell.nodes))}


# ------------------------------------------------------------------------- the figure

def _by_gid(fig, gid: str) -> list:
    return [a for a in fig.findobj() if a.get_gid() == gid]


@pytest.mark.parametrize("kind", ["normal", "reduce"])
def test_figure_shows_title_ops_arrows_and_seed_versus_grown(grown, kind: str):
    cell = getattr(grown, kind)
    words = {"normal": "normal cell", "reduce": "reduction cell"}[kind]
    fig = figure(cell, f"t0028: {words}", node_kinds(grown, cell))
    assert [t.get_text() for t in _by_gid(fig, "title")] == [f"t0028: {words}"]
    assert (len(_by_gid(fig, "input")), len(_by_gid(fig, "seed")), len(_by_gid(fig, "grown")),
            len(_by_gid(fig, "output"))) == (2, 2, 3, 1)
    arrows = [a for a in fig.findobj(FancyArrowPatch)]
    assert len(arrows) == len(_by_gid(fig, "edge")) == len(cell_edges(cell))
    ops = sorted(t.get_text() for t in _by_gid(fig, "op"))
    assert ops == sorted(e.op.name for n in cell.nodes for e in n.edges)
    lay = arrange(cell)  # the texts stand where the layout put the labels
    # An (n, 2) array: pytest 9's approx compares arrays, not lists of tuples.
    assert np.array(sorted(t.get_position() for t in _by_gid(fig, "op"))) == \
        pytest.approx(np.array(sorted(c for c in lay.labels if c)))
    seed, grown_ = _by_gid(fig, "seed"), _by_gid(fig, "grown")
    assert not any(isinstance(p, Circle) for p in seed)
    assert all(isinstance(p, Circle) for p in grown_)
    seed_colours = {(p.get_facecolor(), p.get_edgecolor()) for p in seed}
    grown_colours = {(p.get_facecolor(), p.get_edgecolor()) for p in grown_}
    assert len(seed_colours) == len(grown_colours) == 1 and seed_colours != grown_colours
    key = fig.axes[0].get_legend()
    assert [t.get_text() for t in key.get_texts()] == ["seed node", "node added by growth"]
    assert [h.get_marker() for h in key.legend_handles] == ["s", "o"]
    assert [h.get_markerfacecolor() for h in key.legend_handles] == [
        draw.STYLE["seed"][0], draw.STYLE["grown"][0]]


def test_seed_model_and_unseeded_desc_key_only_what_is_drawn():
    seed = _hand_desc(2, {"seed": {"cells": 3, "reductions": 1, "nodes": 2}})
    fig = figure(seed.normal, "normal cell", node_kinds(seed, seed.normal))
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["seed node"]
    plain = _hand_desc(2)
    fig = figure(plain.normal, "normal cell", node_kinds(plain, plain.normal))
    assert fig.axes[0].get_legend() is None and len(_by_gid(fig, "node")) == 2


# -------------------------------------------------------------------------- the files

def _assert_valid(paths: list[Path]) -> None:
    for path in paths:
        data = path.read_bytes()
        if path.suffix == ".png":
            assert data.startswith(PNG_SIGNATURE)
            image = imread(io.BytesIO(data))
            assert image.ndim == 3 and min(image.shape[:2]) > 50
        else:
            assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")


def _names(stem: str) -> list[str]:
    return sorted(f"{stem}_{kind}.{fmt}" for kind in ("normal", "reduce")
                  for fmt in ("png", "pdf"))


def test_draw_matplotlib_writes_valid_files_and_same_pdf_bytes(grown, tmp_path: Path,
                                                             monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")  # what matplotlib would stamp, if it did
    written = draw_cells(grown, tmp_path / "fig", backend="matplotlib", name="m")
    assert sorted(p.name for p in written) == _names("fig")
    assert sorted(p.name for p in tmp_path.iterdir()) == _names("fig")  # no temp files
    _assert_valid(written)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")
    again = draw_cells(grown, tmp_path / "again", backend="matplotlib", name="m")
    assert again[1].read_bytes() == written[1].read_bytes()  # the normal cell's PDF
    assert b"/CreationDate" not in written[1].read_bytes()
    with pytest.raises(ValueError, match="backend"):
        draw_cells(grown, tmp_path / "x", backend="svg")


def test_draw_folder_titles_with_the_folder_name(tmp_path: Path, monkeypatch):
    titles = []
    real = draw.figure
    monkeypatch.setattr(draw, "figure", lambda cell, title, kinds: (
        titles.append(title), real(cell, title, kinds))[1])
    (tmp_path / "t0007").mkdir()
    _hand_desc().save(tmp_path / "t0007" / "desc.yaml")
    assert draw_main([str(tmp_path / "t0007"), "--backend", "matplotlib"]) == 0
    assert titles == ["t0007: normal cell", "t0007: reduction cell"]
    _assert_valid([tmp_path / "t0007" / name for name in _names("cell")])
    written = draw_folder(tmp_path / "t0007" / "desc.yaml", tmp_path / "out" / "x",
                          backend="matplotlib")
    assert sorted(p.name for p in written) == _names("x")
    assert titles[2:] == ["t0007: normal cell", "t0007: reduction cell"]


@pytest.mark.skipif(not graphviz_available(), reason="graphviz package or dot missing")
def test_draw_graphviz(grown, tmp_path: Path):
    written = draw_cells(grown, tmp_path / "g", backend="graphviz", name="g")
    assert sorted(p.name for p in written) == _names("g")
    _assert_valid(written)
    again = draw_cells(grown, tmp_path / "again", backend="graphviz", name="g")
    assert again[1].read_bytes() == written[1].read_bytes()
    assert b"/CreationDate (D:20000101000000" in written[1].read_bytes()  # not cairo's clock


# --------------------------------------------------------------------------- the CLI

def test_missing_input_exits_2(tmp_path: Path, capsys):
    assert draw_main([str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert draw_main([str(tmp_path)]) == 2  # a folder without desc.yaml
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "desc.yaml" in err and len(err.splitlines()) == 1


def test_invalid_desc_exits_2(tmp_path: Path, capsys):
    (tmp_path / "desc.yaml").write_text("cells: 3\n")
    assert draw_main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_graphviz_backend_without_dot_exits_2(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setattr(draw, "graphviz_available", lambda: False)
    _hand_desc().save(tmp_path / "desc.yaml")
    assert draw_main([str(tmp_path), "--backend", "graphviz"]) == 2
    assert "dot" in capsys.readouterr().err
    assert not list(tmp_path.glob("cell_*"))


def test_script_exits_2_for_missing_folder(tmp_path: Path, monkeypatch, capsys):
    # runpy runs the script file as __main__ without the cost of a new interpreter.
    monkeypatch.setattr(sys, "argv", ["draw.py", str(tmp_path / "nope")])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(REPO / "scripts" / "draw.py"), run_name="__main__")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_a_model_without_reduction_cells_gets_no_reduction_picture(config, tmp_path: Path,
                                                                  capsys):
    """Its desc still holds a reduction cell, which the network never runs: drawing it
    would show a cell the model does not have. The command says why it is missing."""
    folder = tmp_path / "t0023"
    folder.mkdir()
    build_seed(config, cells=1, reductions=0, nodes=2).save(folder / "desc.yaml")
    assert draw_main([str(folder), "--backend", "matplotlib"]) == 0
    assert sorted(p.name for p in folder.glob("cell_*")) == ["cell_normal.pdf",
                                                             "cell_normal.png"]
    out = capsys.readouterr().out.splitlines()
    assert "t0023: reduction cell not drawn: the model has 0 reduction cells" in out
    # One reduction cell: both drawn, nothing said.
    build_seed(config, cells=3, reductions=1, nodes=2).save(folder / "desc.yaml")
    assert sorted(p.name for p in draw_folder(folder, backend="matplotlib",
                                              say=pytest.fail)) == _names("cell")
