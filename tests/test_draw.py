"""Tests for petrinas.draw and scripts/draw.py: files are written and valid, and the
matplotlib layout keeps labels clear of each other and of the nodes."""

from __future__ import annotations

import io
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from petrinas.cli import draw_main
from petrinas.draw import (
    arrange,
    bezier,
    cell_edges,
    draw_cells,
    draw_folder,
    graphviz_available,
    label_boxes,
)
from petrinas.model_desc.builder import seed_cell
from petrinas.model_desc.desc import ModelDesc
from petrinas.model_desc.grow import add_candidate, finalize
from petrinas.model_desc.model import build_model

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")  # _grown builds models: see conftest.py
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CANDIDATE_OPS = ("sep_conv_3x3", "dil_conv_3x3", "max_pool_3x3", "skip_connect",
                 "mbconv_e2", "none")


def _seed() -> ModelDesc:
    cell = seed_cell(1, "sep_conv_3x3")
    return ModelDesc(cells=3, reductions=1, init_channels=4, stem_multiplier=1,
                     num_classes=10, input_shape=(1, 8, 8), normal=cell, reduce=cell)


def _grown(rounds: int = 2, k: int = 3) -> ModelDesc:
    """The seed grown `rounds` times the way the search does it: a candidate reading
    every state, then its top-k (input, op) pairs by |alpha| kept as a node. The
    alphas are set by hand so that normal and reduction cells pick different edges."""
    desc = _seed()
    gen = torch.Generator().manual_seed(3)
    for _ in range(rounds):
        desc = add_candidate(desc, CANDIDATE_OPS)
        state = build_model(desc).state_dict()
        for key in state:
            if key.endswith("candidate.alpha"):
                state[key] = torch.rand(state[key].shape, generator=gen)
        desc, _ = finalize(desc, state, k)
    return desc


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


@pytest.mark.parametrize("make", [_seed, _grown], ids=["seed", "grown"])
def test_draw_matplotlib_writes_valid_files(make, tmp_path: Path):
    desc = make()
    written = draw_cells(desc, tmp_path / "fig", backend="matplotlib")
    assert sorted(p.name for p in written) == _names("fig")
    assert sorted(p.name for p in tmp_path.iterdir()) == _names("fig")  # no temp files
    _assert_valid(written)


def test_grown_desc_is_a_real_three_node_cell():
    desc = _grown()
    assert desc.nodes == 3
    assert all(len(n.edges) >= 2 for n in desc.normal.nodes)
    assert desc.normal != desc.reduce


@pytest.mark.parametrize("kind", ["normal", "reduce"])
def test_layout_keeps_labels_clear(kind: str):
    """No label overlaps another label or a node, every edge points right, and every
    intermediate node feeds the output."""
    cell = getattr(_grown(), kind)
    vertices, routed = arrange(cell)
    boxes = [box for _, box in label_boxes(vertices, routed)]
    assert len(boxes) == sum(len(n.edges) for n in cell.nodes)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not _intersects(a, b), (a, b)
        for v in vertices.values():
            hx, hy = v.half
            node = np.array([v.xy[0] - hx, v.xy[1] - hy, v.xy[0] + hx, v.xy[1] + hy])
            assert not _intersects(a, node), (a, v)
    for edge, _ in routed:
        assert vertices[edge.src].xy[0] < vertices[edge.dst].xy[0]
    into_output = {e.src for e, _ in routed if e.dst == "out"}
    assert into_output == {f"n{k}" for k in range(len(cell.nodes))}


def test_labels_sit_on_their_arcs():
    vertices, routed = arrange(_grown().normal)
    by_edge = dict(label_boxes(vertices, routed))
    for edge, route in routed:
        if edge.label:
            box = by_edge[edge]
            center = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
            arc = bezier(np.array(vertices[edge.src].xy), np.array(vertices[edge.dst].xy),
                         route.rad, np.linspace(0, 1, 201))
            assert np.min(np.linalg.norm(arc - center, axis=1)) < 1e-9


def test_cell_edges_feed_output():
    cell = seed_cell(3, "sep_conv_3x3")
    edges = cell_edges(cell)
    assert [(e.src, e.dst, e.label) for e in edges] == [
        ("s1", "n0", "sep_conv_3x3"), ("s0", "n0", "skip_connect"),
        ("n0", "n1", "sep_conv_3x3"), ("n1", "n2", "sep_conv_3x3"),
        ("n0", "out", ""), ("n1", "out", ""), ("n2", "out", "")]


def _intersects(a: np.ndarray, b: np.ndarray) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_draw_folder_default_stem_and_script_entry(tmp_path: Path):
    _seed().save(tmp_path / "desc.yaml")  # the seed: cheap, and the layout is tested above
    assert draw_main([str(tmp_path)]) == 0
    _assert_valid([tmp_path / name for name in _names("cell")])
    written = draw_folder(tmp_path / "desc.yaml", tmp_path / "out" / "x",
                          backend="matplotlib")
    assert sorted(p.name for p in written) == _names("x")


@pytest.mark.skipif(not graphviz_available(), reason="graphviz package or dot missing")
def test_draw_graphviz(tmp_path: Path):
    written = draw_cells(_grown(), tmp_path / "g", backend="graphviz")
    assert sorted(p.name for p in written) == _names("g")
    _assert_valid(written)


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


def test_script_exits_2_for_missing_folder(tmp_path: Path, monkeypatch, capsys):
    # runpy runs the script file as __main__ without the cost of a new interpreter.
    monkeypatch.setattr(sys, "argv", ["draw.py", str(tmp_path / "nope")])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(REPO / "scripts" / "draw.py"), run_name="__main__")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
