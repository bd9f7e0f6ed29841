"""The op registry: every building block a model description can name.

An op is registered under a name and a kind with `@register_op(name, kind)` on a factory
`(c_in, c_out, stride, affine=True) -> nn.Module`. Model descriptions store only names, so
this module is the single place that turns a name into a module, and `output_shape` the
single place that says what shape it gives back (the model builder checks against it).

Kinds:
  primitive   candidate ops of a cell's edges (DARTS conventions); c_in == c_out
  stem        the first conv of the network
  preprocess  the 1x1 (or factorized, when reducing) convs in front of a cell
  projection  the 1x1 conv after concatenating a cell's nodes
  pool        global average pooling, N x C x H x W -> N x C
  classifier  the final linear layer, N x c_in -> N x c_out

Grouped primitives: a primitive registered with `grouped=True` has a factory that also
takes `groups`. `make_op(name, G*C, G*C, stride, groups=G)` is then G independent copies of
`make_op(name, C, C, stride)` side by side, copy g on channels [g*C, (g+1)*C), and every
tensor of its state_dict is the copies' tensors concatenated along dim 0 (a scalar such
as BN's num_batches_tracked is the same in every copy). Depthwise convs, BN and pooling
are per channel already; a 1x1 conv becomes a grouped conv. The candidate node runs each
op once over all of a cell's states this way (candidate.py), not once per state.

Spatial ops map N x C x H x W to N x c_out x ceil(H/stride) x ceil(W/stride) for any
H, W >= 1: every conv and pool pads by dilation * (kernel - 1) // 2, which gives exactly
that size, so cells can be stacked on odd and tiny inputs.

Module attribute names are part of the checkpoint format (they are the state_dict keys),
so they are spelled out below and must not change casually.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

OpFactory = Callable[..., nn.Module]  # (c_in, c_out, stride, affine=True) -> nn.Module

KINDS = ("primitive", "stem", "preprocess", "projection", "pool", "classifier")
SPATIAL_KINDS = ("primitive", "stem", "preprocess", "projection")


@dataclass(frozen=True)
class OpSpec:
    name: str
    kind: str
    factory: OpFactory
    grouped: bool = False   # the factory takes `groups` (see the module docstring)


# The registry. PRIMITIVES is the subset of kind "primitive", kept in step by register_op
# so that an op registered later (by a plugin, say) is also a valid config choice.
OPS: dict[str, OpSpec] = {}
PRIMITIVES: dict[str, OpSpec] = {}


def register_op(name: str, kind: str, grouped: bool = False
                ) -> Callable[[OpFactory], OpFactory]:
    """Decorator: register `factory` under `name`. A name can be registered only once.
    `grouped`: the factory also takes `groups=G` (see the module docstring)."""
    if kind not in KINDS:
        raise ValueError(f"op {name!r}: unknown kind {kind!r} (known: {', '.join(KINDS)})")
    _check_new_name(name)

    def decorator(factory: OpFactory) -> OpFactory:
        _check_new_name(name)
        spec = OpSpec(name=name, kind=kind, factory=factory, grouped=grouped)
        OPS[name] = spec
        if kind == "primitive":
            PRIMITIVES[name] = spec
        return factory

    return decorator


def _check_new_name(name: str) -> None:
    if name in OPS:
        raise ValueError(f"op {name!r} is already registered (kind {OPS[name].kind!r})")


def get_spec(name: str) -> OpSpec:
    """The registered spec of `name`; KeyError naming the known ops if there is none."""
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}; known ops: {', '.join(sorted(OPS))}") from None


def make_op(name: str, c_in: int, c_out: int, stride: int, affine: bool = True,
            groups: int = 1) -> nn.Module:
    """Build the op registered as `name`; with `groups` > 1, that many independent copies
    side by side (only for ops registered with grouped=True)."""
    spec = get_spec(name)
    if groups == 1:  # factories of ops without a grouped form need not know the argument
        return spec.factory(c_in, c_out, stride, affine)
    if not spec.grouped:
        raise ValueError(f"op {name!r} has no grouped form (register it with grouped=True)")
    if groups < 1 or c_in % groups or c_out % groups:
        raise ValueError(f"op {name!r}: {c_in} -> {c_out} channels do not split into "
                         f"{groups} groups")
    return spec.factory(c_in, c_out, stride, affine, groups=groups)


def output_shape(name: str, in_shape: tuple[int, ...], c_out: int,
                 stride: int) -> tuple[int, ...]:
    """The shape op `name` gives for input shape `in_shape` (N x C x H x W, or N x C for
    the classifier)."""
    kind = get_spec(name).kind
    if kind in SPATIAL_KINDS:
        n, _, h, w = in_shape
        return (n, c_out, math.ceil(h / stride), math.ceil(w / stride))
    if kind == "pool":
        n, c = in_shape[:2]
        return (n, c)
    if kind == "classifier":
        return (in_shape[0], c_out)
    raise AssertionError(f"output_shape: kind {kind!r} of op {name!r} is not handled")


# ------------------------------------------------------------------------ modules

def _same_padding(kernel: int, dilation: int = 1) -> int:
    # With this padding a conv of any stride s gives ceil(size / s), for every size >= 1.
    return dilation * (kernel - 1) // 2


def _check_same_channels(name: str, c_in: int, c_out: int) -> None:
    # An assertion (a builder bug, not user input), but one that `python -O` keeps.
    if c_in != c_out:
        raise AssertionError(f"primitive {name} needs c_in == c_out, got {c_in} and {c_out}")


class ReLUConvBN(nn.Sequential):
    """ReLU, conv (kernel k, stride s, no bias), BN. Keys: conv.weight, bn.*."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int,
                 affine: bool = True) -> None:
        super().__init__(OrderedDict(
            relu=nn.ReLU(inplace=False),
            conv=nn.Conv2d(c_in, c_out, kernel, stride, _same_padding(kernel), bias=False),
            bn=nn.BatchNorm2d(c_out, affine=affine),
        ))


class ConvBN(nn.Sequential):
    """Conv (kernel k, stride s, no bias), BN: the stem, which sees raw pixels (no ReLU)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int,
                 affine: bool = True) -> None:
        super().__init__(OrderedDict(
            conv=nn.Conv2d(c_in, c_out, kernel, stride, _same_padding(kernel), bias=False),
            bn=nn.BatchNorm2d(c_out, affine=affine),
        ))


class DilConv(nn.Sequential):
    """ReLU, depthwise conv (dilation d, stride s), pointwise 1x1, BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, dilation: int,
                 affine: bool = True, groups: int = 1) -> None:
        super().__init__(OrderedDict(
            relu=nn.ReLU(inplace=False),
            dw=nn.Conv2d(c_in, c_in, kernel, stride, _same_padding(kernel, dilation),
                         dilation=dilation, groups=c_in, bias=False),
            pw=nn.Conv2d(c_in, c_out, 1, groups=groups, bias=False),
            bn=nn.BatchNorm2d(c_out, affine=affine),
        ))


class SepConv(nn.Sequential):
    """DARTS separable conv: two (ReLU, depthwise, pointwise, BN) blocks; only the first
    has stride s."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int,
                 affine: bool = True, groups: int = 1) -> None:
        pad = _same_padding(kernel)
        super().__init__(OrderedDict(
            relu1=nn.ReLU(inplace=False),
            dw1=nn.Conv2d(c_in, c_in, kernel, stride, pad, groups=c_in, bias=False),
            pw1=nn.Conv2d(c_in, c_in, 1, groups=groups, bias=False),
            bn1=nn.BatchNorm2d(c_in, affine=affine),
            relu2=nn.ReLU(inplace=False),
            dw2=nn.Conv2d(c_in, c_in, kernel, 1, pad, groups=c_in, bias=False),
            pw2=nn.Conv2d(c_in, c_out, 1, groups=groups, bias=False),
            bn2=nn.BatchNorm2d(c_out, affine=affine),
        ))


class PoolBN(nn.Sequential):
    """3x3 max or average pool (padding 1, stride s), then BN so that its output scale
    matches the conv ops it is mixed with."""

    def __init__(self, mode: str, c: int, stride: int, affine: bool = True) -> None:
        if mode == "max":
            pool: nn.Module = nn.MaxPool2d(3, stride, padding=1)
        elif mode == "avg":
            # Padding zeros would darken the border; average over real pixels only.
            pool = nn.AvgPool2d(3, stride, padding=1, count_include_pad=False)
        else:
            raise ValueError(f"PoolBN: mode must be 'max' or 'avg', got {mode!r}")
        super().__init__(OrderedDict(pool=pool, bn=nn.BatchNorm2d(c, affine=affine)))


class MBConv(nn.Sequential):
    """MobileNetV2 inverted bottleneck without the residual add (the cell adds edges):
    [1x1 expand to c*e, BN, ReLU] (only if e > 1), depthwise 3x3 stride s, BN, ReLU,
    1x1 project to c_out, BN."""

    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int,
                 affine: bool = True, groups: int = 1) -> None:
        hidden = c_in * expansion
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if expansion > 1:
            layers["expand"] = nn.Conv2d(c_in, hidden, 1, groups=groups, bias=False)
            layers["bn_expand"] = nn.BatchNorm2d(hidden, affine=affine)
            layers["relu_expand"] = nn.ReLU(inplace=False)
        layers["dw"] = nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False)
        layers["bn_dw"] = nn.BatchNorm2d(hidden, affine=affine)
        layers["relu_dw"] = nn.ReLU(inplace=False)
        layers["project"] = nn.Conv2d(hidden, c_out, 1, groups=groups, bias=False)
        layers["bn_project"] = nn.BatchNorm2d(c_out, affine=affine)
        super().__init__(layers)


class FactorizedReduce(nn.Module):
    """Halve H and W without losing every other pixel: two 1x1 stride-2 convs, the second
    shifted by one pixel, concatenated along channels. With `groups`, each group's two
    halves are placed side by side, so that its BN channels stay one contiguous block."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True, groups: int = 1) -> None:
        super().__init__()
        per_group = c_out // groups
        if per_group < 2:
            raise ValueError(f"FactorizedReduce needs c_out >= 2 (one per half), got {c_out}")
        self.groups = groups
        self.relu = nn.ReLU(inplace=False)
        self.conv1 = nn.Conv2d(c_in, groups * (per_group // 2), 1, stride=2, groups=groups,
                               bias=False)
        self.conv2 = nn.Conv2d(c_in, groups * (per_group - per_group // 2), 1, stride=2,
                               groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        # Pad one zero row/column at the end before shifting, so the shifted half also
        # has ceil(size / 2) pixels when the size is odd (and for a 1x1 input).
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        first, second = self.conv1(x), self.conv2(shifted)
        if self.groups == 1:
            return self.bn(torch.cat([first, second], dim=1))
        n, _, h, w = first.shape
        halves = [first.reshape(n, self.groups, -1, h, w),
                  second.reshape(n, self.groups, -1, h, w)]
        return self.bn(torch.cat(halves, dim=2).reshape(n, -1, h, w))


class Zero(nn.Module):
    """The `none` op: zeros of the output shape (kept in the graph so gradients flow)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.)
        return x[:, :, ::self.stride, ::self.stride].mul(0.)

    def extra_repr(self) -> str:
        return f"stride={self.stride}"


# ------------------------------------------------------------------------ primitives
# Every primitive has a grouped form (module docstring): `groups` reaches the 1x1 convs,
# the only layers that mix channels; the rest work per channel already.

@register_op("sep_conv_3x3", "primitive", grouped=True)
def _sep_conv_3x3(c_in: int, c_out: int, stride: int, affine: bool = True,
                  groups: int = 1) -> nn.Module:
    _check_same_channels("sep_conv_3x3", c_in, c_out)
    return SepConv(c_in, c_out, 3, stride, affine, groups)


@register_op("sep_conv_5x5", "primitive", grouped=True)
def _sep_conv_5x5(c_in: int, c_out: int, stride: int, affine: bool = True,
                  groups: int = 1) -> nn.Module:
    _check_same_channels("sep_conv_5x5", c_in, c_out)
    return SepConv(c_in, c_out, 5, stride, affine, groups)


@register_op("dil_conv_3x3", "primitive", grouped=True)
def _dil_conv_3x3(c_in: int, c_out: int, stride: int, affine: bool = True,
                  groups: int = 1) -> nn.Module:
    _check_same_channels("dil_conv_3x3", c_in, c_out)
    return DilConv(c_in, c_out, 3, stride, 2, affine, groups)


@register_op("dil_conv_5x5", "primitive", grouped=True)
def _dil_conv_5x5(c_in: int, c_out: int, stride: int, affine: bool = True,
                  groups: int = 1) -> nn.Module:
    _check_same_channels("dil_conv_5x5", c_in, c_out)
    return DilConv(c_in, c_out, 5, stride, 2, affine, groups)


@register_op("max_pool_3x3", "primitive", grouped=True)
def _max_pool_3x3(c_in: int, c_out: int, stride: int, affine: bool = True,
                  groups: int = 1) -> nn.Module:
    _check_same_channels("max_pool_3x3", c_in, c_out)
    return PoolBN("max", c_in, stride, affine)


@register_op("avg_pool_3x3", "primitive", grouped=True)
def _avg_pool_3x3(c_in: int, c_out: int, stride: int, affine: bool = True,
                  groups: int = 1) -> nn.Module:
    _check_same_channels("avg_pool_3x3", c_in, c_out)
    return PoolBN("avg", c_in, stride, affine)


@register_op("skip_connect", "primitive", grouped=True)
def _skip_connect(c_in: int, c_out: int, stride: int, affine: bool = True,
                  groups: int = 1) -> nn.Module:
    _check_same_channels("skip_connect", c_in, c_out)
    if stride == 1:
        return nn.Identity()
    if stride == 2:
        return FactorizedReduce(c_in, c_out, affine, groups)
    raise ValueError(f"skip_connect supports stride 1 or 2, got {stride}")


def _mbconv_factory(name: str, expansion: int) -> OpFactory:
    def factory(c_in: int, c_out: int, stride: int, affine: bool = True,
                groups: int = 1) -> nn.Module:
        _check_same_channels(name, c_in, c_out)
        return MBConv(c_in, c_out, stride, expansion, affine, groups)
    factory.__name__ = f"_{name}"
    return factory


for _e in (1, 2, 3):
    register_op(f"mbconv_e{_e}", "primitive", grouped=True)(
        _mbconv_factory(f"mbconv_e{_e}", _e))
del _e


@register_op("none", "primitive", grouped=True)
def _none(c_in: int, c_out: int, stride: int, affine: bool = True,
          groups: int = 1) -> nn.Module:
    _check_same_channels("none", c_in, c_out)
    return Zero(stride)


# ------------------------------------------------------------------ other building blocks

@register_op("stem", "stem")
def _stem(c_in: int, c_out: int, stride: int, affine: bool = True) -> nn.Module:
    return ConvBN(c_in, c_out, 3, stride, affine)


@register_op("relu_conv_bn_1x1", "preprocess")
def _relu_conv_bn_1x1(c_in: int, c_out: int, stride: int, affine: bool = True) -> nn.Module:
    return ReLUConvBN(c_in, c_out, 1, stride, affine)


@register_op("factorized_reduce", "preprocess")
def _factorized_reduce(c_in: int, c_out: int, stride: int, affine: bool = True) -> nn.Module:
    if stride == 1:
        # Nothing to reduce: a plain 1x1 keeps the call sites free of special cases.
        return ReLUConvBN(c_in, c_out, 1, 1, affine)
    if stride == 2:
        return FactorizedReduce(c_in, c_out, affine)
    raise ValueError(f"factorized_reduce supports stride 1 or 2, got {stride}")


@register_op("cell_projection", "projection")
def _cell_projection(c_in: int, c_out: int, stride: int, affine: bool = True) -> nn.Module:
    # Keys conv.weight / bn.* are relied on: input columns of conv.weight get zeroed to
    # add nodes to a cell without changing its function.
    return ReLUConvBN(c_in, c_out, 1, stride, affine)


class GlobalAvgPool(nn.Sequential):
    """N x C x H x W -> N x C."""

    def __init__(self) -> None:
        super().__init__(OrderedDict(pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten()))


@register_op("global_avg_pool", "pool")
def _global_avg_pool(c_in: int, c_out: int, stride: int, affine: bool = True) -> nn.Module:
    if c_in != c_out:
        raise ValueError(f"global_avg_pool keeps the channels: c_out ({c_out}) must equal "
                         f"c_in ({c_in})")
    return GlobalAvgPool()


@register_op("linear_classifier", "classifier")
def _linear_classifier(c_in: int, c_out: int, stride: int, affine: bool = True) -> nn.Module:
    return nn.Linear(c_in, c_out)
