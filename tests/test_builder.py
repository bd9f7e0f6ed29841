"""Seed descriptions from macro parameters, the models they build, and eval scaling."""

from dataclasses import replace

import pytest
import torch

from petrinas.config_loader import load_config
from petrinas.errors import ConfigError
from petrinas.model_desc import CandidateDesc, build_eval, build_model, build_seed


@pytest.fixture(scope="module", autouse=True)
def _threads(one_thread):
    pass


@pytest.fixture(scope="module")
def config():
    return load_config("petridish_digits", ["model.init_channels=4"])


MACROS = [(1, 0, 1), (3, 1, 1), (3, 1, 2), (4, 1, 3), (5, 2, 1), (6, 2, 2), (7, 3, 1)]


@pytest.mark.parametrize("cells, reductions, nodes", MACROS)
def test_seed_shape(config, cells, reductions, nodes):
    desc = build_seed(config, cells=cells, reductions=reductions, nodes=nodes)
    assert (desc.cells, desc.reductions, desc.nodes) == (cells, reductions, nodes)
    expected = [cells * (i + 1) // (reductions + 1) for i in range(reductions)]
    assert desc.reduction_indices == expected
    assert len(set(expected)) == reductions and all(0 < r < cells for r in expected)
    channels, want = config.model.init_channels, []
    for i in range(cells):
        channels *= 2 if i in expected else 1
        want.append(channels)
    assert desc.cell_channels() == want
    assert desc.cell_channels()[-1] == config.model.init_channels * 2 ** reductions
    for cell in (desc.normal, desc.reduce):
        assert len(cell.nodes) == nodes
        assert cell.candidate is None
        assert all(e.op.name in ("sep_conv_3x3", "skip_connect")
                   for node in cell.nodes for e in node.edges)
    assert (desc.init_channels, desc.stem_multiplier) == (4, config.model.stem_multiplier)
    assert (desc.num_classes, desc.input_shape) == (10, (1, 8, 8))
    assert desc.meta["seed"] == {"cells": cells, "reductions": reductions, "nodes": nodes}


def test_seed_cell_uses_every_state(config):
    desc = build_seed(config, cells=3, reductions=1, nodes=3)
    read = {e.input for node in desc.normal.nodes for e in node.edges}
    assert read == {0, 1, 2, 3}  # s0, s1 and every node but the last (which is the output)


def test_seed_op_comes_from_the_config():
    config = load_config("petridish_digits", ["model.seed_op=dil_conv_3x3"])
    desc = build_seed(config, cells=1, reductions=0, nodes=2)
    assert [e.op.name for n in desc.normal.nodes for e in n.edges] == [
        "dil_conv_3x3", "skip_connect", "dil_conv_3x3"]


@pytest.mark.parametrize("cells, reductions, nodes", [
    (2, 1, 1), (4, 2, 1), (3, 1, 0), (0, 0, 1), (3, -1, 1)])
def test_invalid_macro_shape_is_a_config_error(config, cells, reductions, nodes):
    with pytest.raises(ConfigError) as info:
        build_seed(config, cells=cells, reductions=reductions, nodes=nodes)
    message = str(info.value)
    assert f"cells={cells}" in message and "\n" not in message


@pytest.mark.parametrize("cells, reductions, nodes", [(1, 0, 1), (3, 1, 2), (5, 2, 1)])
def test_forward_shapes_on_digits(config, cells, reductions, nodes):
    torch.manual_seed(0)
    desc = build_seed(config, cells=cells, reductions=reductions, nodes=nodes)
    model = build_model(desc).eval()
    sizes = []
    hooks = [cell.register_forward_hook(lambda m, i, out: sizes.append(tuple(out.shape)))
             for cell in model.cells]
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        logits = model(x)
    for hook in hooks:
        hook.remove()
    assert logits.shape == (5, 10)
    assert torch.isfinite(logits).all()
    assert len(sizes) == cells
    side = 8
    for i, (shape, channels) in enumerate(zip(sizes, desc.cell_channels())):
        if i in desc.reduction_indices:
            side //= 2
        assert shape == (5, channels, side, side), (i, shape)
    assert side == 8 // 2 ** reductions


def test_train_mode_forward_and_backward(config):
    torch.manual_seed(0)
    model = build_model(build_seed(config, cells=3, reductions=1, nodes=2)).train()
    logits = model(torch.randn(4, 1, 8, 8))
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


# ------------------------------------------------------------------------------- eval

def _grown_desc(desc):
    """The description with a candidate in both cells (build_eval must drop it)."""
    def with_candidate(cell):
        return replace(cell, candidate=CandidateDesc(inputs=(0, 1), ops=("sep_conv_3x3", "none")))
    return desc.with_cells(with_candidate(desc.normal), with_candidate(desc.reduce))


@pytest.mark.parametrize("cells, reductions, scale, max_cells, expected", [
    (3, 1, 2.0, 20, 6),
    (4, 1, 1.5, 20, 6),
    (3, 1, 3.0, 7, 7),      # capped by eval.max_cells
    (5, 2, 2.0, 8, 8),
    (5, 2, 1.0, 20, 5),
])
def test_build_eval_scales_cells(config, cells, reductions, scale, max_cells, expected):
    gallery = _grown_desc(build_seed(config, cells=cells, reductions=reductions, nodes=2))
    eval_config = load_config("petridish_digits", [
        f"eval.cell_count_scale={scale}", f"eval.max_cells={max_cells}",
        "eval.init_channels=12"])
    desc = build_eval(gallery, eval_config)
    assert desc.cells == expected
    assert desc.reductions == reductions
    assert desc.init_channels == 12
    assert desc.normal.nodes == gallery.normal.nodes
    assert desc.reduce.nodes == gallery.reduce.nodes
    assert desc.normal.candidate is None and desc.reduce.candidate is None
    assert (desc.stem_multiplier, desc.num_classes, desc.input_shape) == (
        gallery.stem_multiplier, gallery.num_classes, gallery.input_shape)
    assert desc.meta["eval_of"] == {"cells": cells, "init_channels": 4}
    model = build_model(desc).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    assert not any("candidate" in key for key in model.state_dict())


def test_build_eval_with_the_digits_conf(config):
    gallery = build_seed(config, cells=4, reductions=1, nodes=1)
    digits = load_config("petridish_digits")
    desc = build_eval(gallery, digits)
    assert desc.cells == min(round(4 * digits.eval.cell_count_scale), digits.eval.max_cells)
    assert desc.init_channels == digits.eval.init_channels


def test_build_eval_never_breaks_the_macro_rule(config):
    gallery = build_seed(config, cells=5, reductions=2, nodes=1)
    tight = load_config("petridish_digits", ["eval.max_cells=2"])
    desc = build_eval(gallery, tight)
    assert desc.cells >= 2 * desc.reductions + 1
