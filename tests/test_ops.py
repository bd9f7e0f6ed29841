"""Every registered op: shapes at stride 1 and 2 on even, odd and tiny inputs; gradients."""

import pytest
import torch

from petrinas.model_desc.ops import (OPS, PRIMITIVES, OpSpec, make_op, output_shape,
                                     register_op)
from support import randomize

EXPECTED_PRIMITIVES = {
    "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5", "max_pool_3x3",
    "avg_pool_3x3", "skip_connect", "mbconv_e1", "mbconv_e2", "mbconv_e3", "none"}

# (c_in, c_out) per kind; odd c_out for the preprocess ops checks FactorizedReduce's split.
CHANNELS = {"primitive": (6, 6), "stem": (3, 6), "preprocess": (4, 7), "projection": (12, 6),
            "pool": (6, 6), "classifier": (6, 10)}

SIZES = (8, 5, 2, 1)


def _cases():
    for name in sorted(OPS):
        for stride in (1, 2):
            for size in SIZES:
                if size == 1 and stride == 1:
                    continue  # a 1x1 map only arises after reductions, i.e. at stride 2
                if OPS[name].kind == "classifier" and size != SIZES[0]:
                    continue  # its input is N x C: no spatial size to vary
                yield pytest.param(name, stride, size, id=f"{name}-s{stride}-{size}x{size}")


def _input(kind: str, c_in: int, size: int) -> torch.Tensor:
    shape = (2, c_in) if kind == "classifier" else (2, c_in, size, size)
    return torch.randn(shape, requires_grad=True)


@pytest.mark.parametrize("name,stride,size", list(_cases()))
def test_op_shape_and_gradients(name, stride, size):
    torch.manual_seed(0)
    kind = OPS[name].kind
    c_in, c_out = CHANNELS[kind]
    op = make_op(name, c_in, c_out, stride).train()
    x = _input(kind, c_in, size)

    y = op(x)

    assert tuple(y.shape) == output_shape(name, tuple(x.shape), c_out, stride)
    assert torch.isfinite(y).all()
    y.sum().backward()  # x requires grad, so even the parameterless `none` op backprops
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for key, param in op.named_parameters():
        assert param.grad is not None, f"{name}: no grad for {key}"
        assert torch.isfinite(param.grad).all(), f"{name}: non-finite grad for {key}"


def test_output_shape_by_kind():
    assert output_shape("sep_conv_3x3", (2, 6, 5, 7), 6, 2) == (2, 6, 3, 4)
    assert output_shape("stem", (2, 3, 32, 32), 48, 1) == (2, 48, 32, 32)
    assert output_shape("global_avg_pool", (2, 6, 4, 4), 6, 1) == (2, 6)
    assert output_shape("linear_classifier", (2, 6), 10, 1) == (2, 10)


def test_primitives_are_exactly_the_darts_set_plus_mbconv():
    assert set(PRIMITIVES) == EXPECTED_PRIMITIVES
    assert all(isinstance(spec, OpSpec) and spec.kind == "primitive"
               for spec in PRIMITIVES.values())
    assert {n for n, s in OPS.items() if s.kind == "primitive"} == EXPECTED_PRIMITIVES


def test_duplicate_registration_raises():
    before = dict(OPS)
    with pytest.raises(ValueError, match="sep_conv_3x3"):
        register_op("sep_conv_3x3", "primitive")(lambda c_in, c_out, stride, affine=True: None)
    assert OPS == before


def test_unknown_kind_raises():
    with pytest.raises(ValueError, match="kind"):
        register_op("some_new_op", "not_a_kind")
    assert "some_new_op" not in OPS


def test_opspec_is_frozen():
    with pytest.raises(Exception):
        OPS["none"].name = "other"  # type: ignore[misc]


def test_make_op_unknown_name():
    with pytest.raises(KeyError, match="sep_conv_7x7") as info:
        make_op("sep_conv_7x7", 6, 6, 1)
    assert "sep_conv_3x3" in str(info.value)  # lists the known ops


def test_primitive_channel_mismatch_is_rejected():
    with pytest.raises(AssertionError, match="c_in == c_out"):
        make_op("sep_conv_3x3", 6, 8, 1)


def test_cell_projection_keys():
    keys = set(make_op("cell_projection", 12, 6, 1).state_dict())
    assert {"conv.weight", "bn.weight", "bn.bias", "bn.running_mean"} <= keys


def test_no_conv_has_a_bias():
    for name, spec in OPS.items():
        if spec.kind in ("pool", "classifier"):
            continue
        c_in, c_out = CHANNELS[spec.kind]
        for stride in (1, 2):
            for module in make_op(name, c_in, c_out, stride).modules():
                if isinstance(module, torch.nn.Conv2d):
                    assert module.bias is None, f"{name}: conv with bias"


def test_affine_false_gives_parameterless_bn():
    op = make_op("max_pool_3x3", 6, 6, 1, affine=False)
    assert not list(op.parameters())


def test_skip_connect_is_identity_at_stride_1():
    x = torch.randn(2, 6, 5, 5)
    assert torch.equal(make_op("skip_connect", 6, 6, 1)(x), x)


def test_none_returns_zeros():
    x = torch.randn(2, 6, 5, 5)
    y = make_op("none", 6, 6, 2)(x)
    assert y.shape == (2, 6, 3, 3) and not y.any()


def test_factorized_reduce_sees_both_pixel_phases():
    # The two halves read even and odd pixels; each must depend on its own phase only.
    op = make_op("factorized_reduce", 2, 4, 2).eval()
    x = torch.zeros(1, 2, 4, 4)
    x[:, :, 1::2, 1::2] = 1.0  # only odd pixels lit
    y = op(x) - op(torch.zeros_like(x))
    assert torch.allclose(y[:, :2], torch.zeros(1, 2, 2, 2))
    assert not torch.allclose(y[:, 2:], torch.zeros(1, 2, 2, 2))


# ------------------------------------------------------------------------ grouped form

GROUPS = 3


@pytest.mark.parametrize("name", sorted(n for n, s in PRIMITIVES.items() if s.grouped))
@pytest.mark.parametrize("stride", [1, 2])
def test_grouped_op_is_independent_copies_side_by_side(name, stride):
    """make_op(name, G*C, G*C, stride, groups=G) holding the G copies' tensors stacked
    along dim 0 computes what the G copies compute, each on its block of channels:
    outputs, gradients and BN statistics. float64, so that the only differences are the
    summation orders of grouped and separate kernels (relative 1e-12; float32 would
    need ~1e-5, and hide an off-by-one-block error in a tensor with small values)."""
    c = 4
    copies = [randomize(make_op(name, c, c, stride), seed=g).double().train()
              for g in range(GROUPS)]
    grouped = make_op(name, GROUPS * c, GROUPS * c, stride, groups=GROUPS).double().train()
    stacked = {key: torch.cat([copy.state_dict()[key] for copy in copies])
               if value.dim() else value
               for key, value in copies[0].state_dict().items()}
    grouped.load_state_dict(stacked)
    x = torch.randn(2, GROUPS * c, 5, 5, dtype=torch.float64)
    weight = torch.randn(output_shape(name, tuple(x.shape), GROUPS * c, stride),
                         dtype=torch.float64)

    want = torch.cat([op(part) for op, part in zip(copies, x.chunk(GROUPS, 1))], dim=1)
    got = grouped(x)
    assert got.shape == want.shape
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)
    if not want.requires_grad:  # skip_connect at stride 1 and none: no weights
        return
    (want * weight).sum().backward()
    (got * weight).sum().backward()
    for key, param in grouped.named_parameters():
        per_copy = torch.cat([dict(op.named_parameters())[key].grad for op in copies])
        scale = per_copy.abs().max()
        assert torch.allclose(param.grad, per_copy, rtol=0, atol=1e-12 * scale), key
    for key, value in grouped.state_dict().items():  # BN running statistics
        per_copy = [op.state_dict()[key] for op in copies]
        if value.dim():
            assert torch.allclose(value, torch.cat(per_copy), rtol=1e-12, atol=0), key
        else:
            assert all(torch.equal(value, v) for v in per_copy), key


def test_every_builtin_primitive_has_a_grouped_form():
    assert all(spec.grouped for spec in PRIMITIVES.values())


def test_groups_need_a_grouped_op_and_channels_that_split():
    with pytest.raises(ValueError, match="no grouped form"):
        make_op("stem", 6, 6, 1, groups=2)
    with pytest.raises(ValueError, match="do not split"):
        make_op("sep_conv_3x3", 6, 6, 1, groups=4)
