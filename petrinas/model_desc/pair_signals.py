"""What a grown model's candidate pairs would add to their cells, measured on one batch.

Finalize turns a pair m = (state, op) into a node whose output h_m enters the cell's
output projection (ReLU, 1x1 conv, BN) through new input columns that start at zero
(grow.py). So what a pair can add is what those columns can fit: a linear map of
ReLU(h_m) at every position, added to the projection's conv output. `cell_signals`
records, for each cell with a candidate, in one training-mode forward and backward of
the batch (as the search phase computes them: BatchNorms normalizing by the batch, no
drop path, the parent's function since the candidate adds exactly zero):

    pairs[m]  h_m, positions x channels (P x C, P = N*H*W); ReLU(h_m) is the new
              columns' input
    nodes     ReLU of the cell's node outputs, P x (C * nodes): the old columns' input
    grad      dLoss/d(the projection's conv output), P x C: what every column's
              gradient is made of (the new columns' gradient is grad^T pairs[m])

Everything is float64 on the CPU. The forward moves BatchNorm running statistics and the
backward fills .grad: measure on a copy, or after the weights were taken.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from petrinas.model_desc.model import CellNetwork


@dataclass
class CellSignals:
    pairs: dict[int, torch.Tensor]     # pair index -> P x C (`none` is never computed)
    nodes: torch.Tensor                # P x (C * nodes)
    grad: torch.Tensor                 # P x C
    n_pairs: int                       # len(candidate.pairs), `none` included


def positions(x: torch.Tensor) -> torch.Tensor:
    """N x C x H x W -> (N*H*W) x C, float64 on the CPU."""
    return x.detach().double().cpu().permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def cell_signals(model: CellNetwork, x: torch.Tensor, y: torch.Tensor
                 ) -> dict[int, CellSignals]:
    """Per index of a cell with a candidate, its `CellSignals` on the batch (x, y)."""
    found: dict[int, dict] = {}
    hooks = []
    for i, cell in enumerate(model.cells):
        if cell.candidate is None:
            continue
        found[i] = {"pairs": {}, "n_pairs": cell.candidate.alpha.numel()}
        for group in cell.candidate.groups:
            for k, op in enumerate(group.ops.values()):
                hooks.append(op.register_forward_hook(
                    _pair_recorder(found[i]["pairs"], group.alpha_index[k].tolist())))
        hooks.append(cell.proj.register_forward_pre_hook(_nodes_recorder(found[i])))
        hooks.append(cell.proj.conv.register_forward_hook(_grad_recorder(found[i])))
    if not hooks:
        return {}
    training, drop = model.training, model.drop_path_prob
    model.train()
    model.drop_path_prob = 0.0
    try:
        with torch.enable_grad():  # the cell runs its candidate only with gradients on
            F.cross_entropy(model(x), y).backward()
    finally:
        for hook in hooks:
            hook.remove()
        model.train(training)
        model.drop_path_prob = drop
    return {i: CellSignals(**parts) for i, parts in found.items()}


def _pair_recorder(out: dict[int, torch.Tensor], pairs: list[int]):
    """A forward hook splitting an op's output into its G states' blocks (the op runs as
    G copies side by side: candidate.py)."""
    def hook(module, inputs, output):
        for m, block in zip(pairs, output.chunk(len(pairs), dim=1)):
            out[m] = positions(block)
    return hook


def _nodes_recorder(found: dict):
    def hook(module, args):
        found["nodes"] = positions(args[0].relu())
    return hook


def _grad_recorder(found: dict):
    def hook(module, inputs, output):
        output.register_hook(lambda grad: found.__setitem__("grad", positions(grad)))
    return hook
