"""MAC and parameter counts checked against hand-computed values."""

import sys

import pytest
import torch
from torch import nn

from petrinas.model_desc.cost import cost


def test_conv_macs_and_params():
    model = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    result = cost(model, (3, 8, 8))
    assert result["macs"] == 3 * 8 * 9 * 64
    assert result["params"] == 3 * 8 * 9
    assert "latency_ms" not in result


def test_linear_macs_and_params():
    # cost() takes image shapes, so the features arrive as 10 x 1 x 1 and are flattened.
    model = nn.Sequential(nn.Flatten(), nn.Linear(10, 5))
    result = cost(model, (10, 1, 1))
    assert result["macs"] == 50
    assert result["params"] == 10 * 5 + 5


def test_depthwise_conv_counts_one_filter_per_channel():
    c = 6
    model = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
    result = cost(model, (c, 5, 5))
    assert result["macs"] == c * 9 * 25
    assert result["params"] == c * 9


def test_stack_sums_layers_and_ignores_elementwise_ops():
    model = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Conv2d(4, 2, 3, stride=2, padding=1, bias=False))
    result = cost(model, (3, 6, 6))
    assert result["macs"] == 3 * 4 * 36 + 4 * 2 * 9 * 9
    assert result["params"] == 12 + 8 + 72


def test_batch_gives_per_example_macs():
    model = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert cost(model, (4, 3, 8, 8))["macs"] == cost(model, (3, 8, 8))["macs"]


def test_params_include_frozen_parameters():
    model = nn.Linear(4, 3)
    model.bias.requires_grad_(False)
    assert cost(nn.Sequential(nn.Flatten(), model), (4, 1, 1))["params"] == 15


@pytest.mark.parametrize("training", [True, False])
def test_training_mode_is_restored(training):
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4))
    model.train(training)
    model[1].eval()  # a frozen BN inside a training model stays frozen
    cost(model, (3, 8, 8))
    assert model.training is training
    assert model[0].training is training
    assert model[1].training is False


def test_eval_mode_during_count_leaves_bn_statistics_alone():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4)).train()
    before = model[1].running_mean.clone()
    cost(model, (3, 8, 8), latency=True, repeats=2)
    assert torch.equal(model[1].running_mean, before)


def test_latency_when_requested():
    model = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    result = cost(model, (3, 8, 8), latency=True, repeats=3)
    assert result["latency_ms"] > 0
    assert isinstance(result["latency_ms"], float)
    assert set(result) == {"macs", "params", "latency_ms"}


def test_bad_input_shape():
    with pytest.raises(ValueError, match="input_shape"):
        cost(nn.Identity(), (8, 8))


def test_tensorwatch_counts_conv_and_linear_exactly_as_torch():
    """tensorwatch's Flops: one per multiply-add, as torch. Its MAdd (archai Petridish's
    cost axis) counts the multiply and the add apart: 2 * 27 - 1 per output of a 3x3x3
    kernel without bias, plus 2 * 512 - 1 per linear output. Fails if the counter
    returned MAdd, or if tensorwatch's Flops stopped being the MACs of a conv."""
    import tensorwatch

    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.Flatten(),
                          nn.Linear(8 * 8 * 8, 10, bias=False))
    expected = 8 * 8 * 8 * 3 * 9 + 512 * 10
    assert cost(model, (3, 8, 8))["macs"] == expected
    assert cost(model, (3, 8, 8), counter="tensorwatch")["macs"] == expected
    madd = tensorwatch.ModelStats(model, [1, 3, 8, 8], clone_model=True).MAdd
    assert madd == 8 * 8 * 8 * (2 * 27 - 1) + 10 * (2 * 512 - 1)


def test_tensorwatch_flops_and_madd_of_the_smallest_digits_seed():
    """The figures the cost module's docstring and docs/archai-petridish.md state, for the
    1-cell, 0-reduction, 1-node digits seed (torch 2.14, tensorwatch 0.9.1). Fails if
    the counter or the seed model changes what it counts."""
    import tensorwatch
    from petrinas import load_config
    from petrinas.model_desc import build_model, build_seed

    desc = build_seed(load_config("petridish_digits"), cells=1, reductions=0, nodes=1)
    model = build_model(desc)
    stats = tensorwatch.ModelStats(model, [1, *desc.input_shape], clone_model=True)
    assert cost(model, desc.input_shape)["macs"] == 16_690
    assert cost(model, desc.input_shape, counter="tensorwatch")["macs"] == 22_535
    assert (stats.Flops, stats.MAdd) == (22_535, 40_090)


def test_tensorwatch_against_torch_on_every_digits_seed_shape():
    """tensorwatch also counts BN, ReLU and pooling elements. Measured with torch 2.14 and
    tensorwatch 0.9.1: 1.26x to 1.35x torch's count on the 16 digits seed shapes."""
    from petrinas import load_config
    from petrinas.config import seed_macros
    from petrinas.model_desc import build_model, build_seed

    config = load_config("petridish_digits")
    ratios = {}
    for cells, reductions, nodes in seed_macros(config):
        desc = build_seed(config, cells=cells, reductions=reductions, nodes=nodes)
        model = build_model(desc)
        ours = cost(model, desc.input_shape)["macs"]
        theirs = cost(model, desc.input_shape, counter="tensorwatch")["macs"]
        ratios[(cells, reductions, nodes)] = theirs / ours
    assert len(ratios) == 16
    assert all(1.2 < r < 1.4 for r in ratios.values()), ratios


def test_tensorwatch_missing_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorwatch", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"petrinas\[tensorwatch\]"):
        cost(nn.Identity(), (3, 8, 8), counter="tensorwatch")


def test_unknown_counter():
    with pytest.raises(ValueError, match="counter must be one of torch, tensorwatch"):
        cost(nn.Identity(), (3, 8, 8), counter="fvcore")
