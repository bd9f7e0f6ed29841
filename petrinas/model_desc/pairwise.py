"""The candidate in its per-pair form: one module per (input, op), `none` included.

This is how the candidate was first written, and the definition the grouped candidate
(candidate.py) must match: the tests compare the two, output and gradients, and
`benchmarks/candidate_ops.py` measures what grouping saves. The search does not use it.

`to_pairwise` / `to_grouped` convert a whole grown model between the two forms with the
same weights (pair m's weights are its slice of the grouped op's tensors).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from petrinas.model_desc.candidate import (ALPHA_INIT, Candidate, candidate_groups,
                                           computed_ops, pair_state)
from petrinas.model_desc.desc import CandidateDesc, edge_stride
from petrinas.model_desc.ops import get_spec, make_op


class PairwiseCandidate(nn.Module):
    """sum_m alpha_m * op_m(stop_gradient(state_m)), through stop-forward; keys
    `alpha` and `ops.{m}.*` in CandidateDesc.pairs order."""

    def __init__(self, desc: CandidateDesc, channels: int, reduction: bool):
        super().__init__()
        pairs = desc.pairs
        self.inputs = [state for state, _ in pairs]
        self.ops = nn.ModuleList(
            make_op(op, channels, channels, edge_stride(reduction, state))
            for state, op in pairs)
        self.alpha = nn.Parameter(torch.full((len(pairs),), ALPHA_INIT))

    def forward(self, states: list[torch.Tensor]) -> torch.Tensor:
        total = 0
        for m, (state, op) in enumerate(zip(self.inputs, self.ops)):
            total = total + self.alpha[m] * op(states[state].detach())
        return total - total.detach()


def pairwise_state(state: dict[str, torch.Tensor], desc: CandidateDesc,
                   reduction: bool) -> dict[str, torch.Tensor]:
    """A grouped candidate's state_dict (keys without the cell prefix) in the per-pair
    layout."""
    out = {"alpha": state["alpha"].clone()}
    for m in range(len(desc.pairs)):
        for key, value in pair_state(state, "", desc, reduction, m).items():
            out[f"ops.{m}.{key}"] = value
    return out


def grouped_state(state: dict[str, torch.Tensor], desc: CandidateDesc,
                  reduction: bool) -> dict[str, torch.Tensor]:
    """The inverse of `pairwise_state`: the pairs' tensors stacked along dim 0."""
    out = {"alpha": state["alpha"].clone()}
    n_ops = len(desc.ops)
    for g, (_, positions) in enumerate(candidate_groups(desc, reduction)):
        for name in computed_ops(desc):
            pairs = [p * n_ops + desc.ops.index(name) for p in positions]
            prefix = f"ops.{pairs[0]}."
            for rest in (k[len(prefix):] for k in state if k.startswith(prefix)):
                parts = [state[f"ops.{m}.{rest}"] for m in pairs]
                if not get_spec(name).grouped:
                    for index, value in enumerate(parts):
                        out[f"groups.{g}.ops.{name}.{index}.{rest}"] = value.clone()
                elif parts[0].dim():
                    out[f"groups.{g}.ops.{name}.{rest}"] = torch.cat(parts)
                else:  # a count (BN's num_batches_tracked): the same for every pair
                    out[f"groups.{g}.ops.{name}.{rest}"] = parts[0].clone()
    return out


def to_pairwise(model: nn.Module) -> nn.Module:
    """A copy of a grown model whose candidates are per-pair, with the same weights."""
    return _convert(model, PairwiseCandidate, pairwise_state)


def to_grouped(model: nn.Module) -> nn.Module:
    """A copy of a model made by `to_pairwise`, with grouped candidates again."""
    return _convert(model, Candidate, grouped_state)


def _convert(model: nn.Module, form: type, convert) -> nn.Module:
    model = copy.deepcopy(model)
    channels = model.desc.cell_channels()
    for i, cell in enumerate(model.cells):
        if cell.candidate is None:
            continue
        reduction = i in model.desc.reduction_indices
        desc = model.desc.cell_desc(i).candidate
        old = cell.candidate
        cell.candidate = form(desc, channels[i], reduction).to(old.alpha)  # device, dtype
        cell.candidate.load_state_dict(convert(old.state_dict(), desc, reduction))
        cell.candidate.train(old.training)
    return model
