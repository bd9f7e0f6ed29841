"""The search-phase candidate node, computed one op at a time over all of a cell's states.

The candidate is `sum over (state s, op o) of alpha[s, o] * o(stop_gradient(s))`, passed
through stop-forward (value 0, gradient identity). Run as one small module per pair, it
held 1,032 of the 1,175 leaf modules of the paper config's mid-size search-phase model,
and a training step was bound by launching their kernels (5.1x the aten ops of the
post-train model per forward and backward; `benchmarks/candidate_ops.py`).

Here each op is one module over the states that reach it at the same stride (in a
reduction cell s0 and s1 are read at stride 2, the nodes at stride 1: `edge_stride`),
concatenated along channels: `make_op(op, G*C, G*C, stride, groups=G)` is G independent
copies of the op side by side (ops.py), so it computes what the G pairs compute. The
alphas are applied as one weighted sum over the ops' stacked outputs, in the ops' dtype
(under autocast a float32 weight tensor would promote the bfloat16 sum, and the cell
output it is added to, to float32). `none` is
not computed at all: it only adds zeros. Its alphas stay in the alpha vector, for the L1
term and so that finalizing never picks it.

Not shared: the leading ReLU that sep_conv, dil_conv and skip_connect's factorized reduce
each apply to the same states. Computing it once per group saved 46 of 15,112 aten ops
of a training step of the mid-size paper model (0.3 %), and running the ops' bodies
without their own forward would hide them from module hooks.

State-dict layout (what `pair_state` slices for finalize):
    cells.{i}.candidate.alpha                  one per (input, op), in CandidateDesc.pairs order
    cells.{i}.candidate.groups.{g}.ops.{op}.*  the op over group g's states; every tensor
                                               is the pairs' tensors stacked along dim 0
An op registered without a grouped form runs as G separate copies (`PerState`), whose
keys are `...ops.{op}.{position}.*`.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from petrinas.model_desc.desc import CandidateDesc, edge_stride
from petrinas.model_desc.ops import get_spec, make_op

# The alphas start small but non-zero: with zero alphas the candidate ops would get no
# gradient until the alphas moved.
ALPHA_INIT = 0.1


def candidate_groups(desc: CandidateDesc, reduction: bool) -> list[tuple[int, list[int]]]:
    """(stride, positions in desc.inputs) of each group of inputs that share a stride, in
    the order of their first input."""
    groups: dict[int, list[int]] = {}
    for position, state in enumerate(desc.inputs):
        groups.setdefault(edge_stride(reduction, state), []).append(position)
    return list(groups.items())


def computed_ops(desc: CandidateDesc) -> list[str]:
    """The ops the candidate runs: all but `none`, which only ever adds zeros."""
    return [op for op in desc.ops if op != "none"]


class PerState(nn.ModuleList):
    """G separate copies of an op that has no grouped form, over G blocks of channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = x.chunk(len(self), dim=1)
        return torch.cat([op(part) for op, part in zip(self, parts)], dim=1)


def grouped_op(name: str, groups: int, channels: int, stride: int, affine: bool = True
               ) -> nn.Module:
    """Op `name` over `groups` states of `channels` channels each, concatenated."""
    if get_spec(name).grouped:
        return make_op(name, groups * channels, groups * channels, stride, affine,
                       groups=groups)
    return PerState(make_op(name, channels, channels, stride, affine)
                    for _ in range(groups))


class CandidateGroup(nn.Module):
    """Every computed op of the candidate over the inputs at `positions`, which share a
    stride; returns their alpha-weighted sum (N x C x H' x W')."""

    def __init__(self, desc: CandidateDesc, positions: Sequence[int], channels: int,
                 stride: int):
        super().__init__()
        self.states = [desc.inputs[p] for p in positions]
        names = computed_ops(desc)
        self.ops = nn.ModuleDict({name: grouped_op(name, len(positions), channels, stride,
                                                   desc.affine)
                                  for name in names})
        # alpha_index[k, g]: the alpha of (input at positions[g], k-th computed op).
        n_ops = len(desc.ops)
        index = [[p * n_ops + desc.ops.index(name) for p in positions] for name in names]
        self.register_buffer("alpha_index", torch.tensor(index, dtype=torch.long),
                             persistent=False)

    def forward(self, states: list[torch.Tensor], alpha: torch.Tensor) -> torch.Tensor:
        x = torch.cat([states[s].detach() for s in self.states], dim=1)
        # Ops first: each op's slice of y (and of its gradient) is one contiguous block,
        # so no op's backward has to copy its gradient into shape.
        y = torch.stack([op(x) for op in self.ops.values()])  # ops x N x G*C x H x W
        weights = alpha[self.alpha_index].to(y.dtype)  # ops x G
        k, g = weights.shape
        # unflatten is a view in any memory format (channels_last on CUDA too).
        y = y.unflatten(2, (g, -1))                            # ops x N x G x C x H x W
        return (y * weights.view(k, 1, g, 1, 1, 1)).sum((0, 2))


class Candidate(nn.Module):
    """sum over (state, op) of alpha * op(stop_gradient(state)), passed through
    stop-forward.

    Its value is exactly zero, so adding it to the cell output leaves the parent's
    function unchanged; its gradient is the cell output's, so the ops and alphas learn.
    Detached inputs keep its gradient out of the parent's weights. The cell runs it only
    in training mode with gradients on: elsewhere it could change nothing.
    """

    def __init__(self, desc: CandidateDesc, channels: int, reduction: bool):
        super().__init__()
        self.alpha = nn.Parameter(torch.full((len(desc.pairs),), ALPHA_INIT))
        self.groups = nn.ModuleList()
        if computed_ops(desc):
            self.groups.extend(CandidateGroup(desc, positions, channels, stride)
                               for stride, positions in candidate_groups(desc, reduction))

    def forward(self, states: list[torch.Tensor]) -> torch.Tensor:
        if not len(self.groups):
            # Only `none`: an exact zero that still gives the alphas a (zero) gradient.
            return self.alpha[:0].sum()
        total = self.groups[0](states, self.alpha)
        for group in self.groups[1:]:
            total = total + group(states, self.alpha)
        return total - total.detach()


def pair_state(state: dict[str, torch.Tensor], prefix: str, desc: CandidateDesc,
               reduction: bool, m: int) -> dict[str, torch.Tensor]:
    """The weights of pair m (input, op) of the candidate whose keys start with `prefix`
    (e.g. "cells.3.candidate."), as the state_dict of that op on its own (`make_op`):
    sliced out of the group's tensors, and copied, so that no view keeps the whole group's
    storage alive (torch.save would write all of it)."""
    n_ops = len(desc.ops)
    position, op = divmod(m, n_ops)
    name = desc.ops[op]
    for g, (_, positions) in enumerate(candidate_groups(desc, reduction)):
        if position in positions:
            index, size = positions.index(position), len(positions)
            break
    group_prefix = f"{prefix}groups.{g}.ops.{name}."
    out = {}
    for key, value in state.items():
        if not key.startswith(group_prefix):
            continue
        rest = key[len(group_prefix):]
        if get_spec(name).grouped:
            out[rest] = (value.chunk(size, dim=0)[index] if value.dim() else value).clone()
        elif rest.startswith(f"{index}."):
            out[rest[len(f"{index}."):]] = value.clone()
    return out
