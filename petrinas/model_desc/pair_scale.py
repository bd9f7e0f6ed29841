"""How large each candidate pair's output is: the scale that |alpha| alone does not see.

The candidate adds alpha[m] * op_m(s) to the cell output for every (state s, op) pair m,
and finalize keeps the k pairs of largest |alpha| (`grow.select_pairs`). But a pair's
contribution is |alpha| times the size of op_m(s): a pooling op or skip passes its input
state's scale on, a conv op ends in a BatchNorm of learned scale. The inheritance
benchmark found |alpha| favouring max_pool_3x3 and random pairs doing as well
(docs/search-quality.md, "Where a child's accuracy comes from"); `search.pair_score:
alpha_rms` scores a pair by |alpha| times the root mean square of its op's output,
measured here.
"""

from __future__ import annotations

import torch

from petrinas.model_desc.model import CellNetwork


def pair_output_rms(model: CellNetwork, x: torch.Tensor) -> dict[int, torch.Tensor]:
    """Per index of a cell with a candidate, the RMS of each pair's op output on the batch
    `x` (float64, in candidate.pairs order; `none`, never computed, is 0), as the search
    phase's training forward computes it: in training mode, BatchNorms normalizing by the
    batch, no drop path.

    The forward moves the BatchNorms' running statistics: measure after the model's
    weights were taken, or on a copy."""
    rms: dict[int, torch.Tensor] = {}
    hooks = []
    for i, cell in enumerate(model.cells):
        if cell.candidate is None:
            continue
        rms[i] = torch.zeros(cell.candidate.alpha.numel(), dtype=torch.float64)
        for group in cell.candidate.groups:
            for k, op in enumerate(group.ops.values()):
                hooks.append(op.register_forward_hook(
                    _recorder(rms[i], group.alpha_index[k].tolist())))
    if not hooks:
        return rms
    training, drop = model.training, model.drop_path_prob
    model.train()
    model.drop_path_prob = 0.0
    try:
        with torch.enable_grad():  # the cell runs its candidate only with gradients on
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(training)
        model.drop_path_prob = drop
    return rms


def _recorder(out: torch.Tensor, pairs: list[int]):
    """A forward hook writing the RMS of each of an op's G channel blocks (one per state
    of its group: G copies of the op side by side) into `out` at `pairs`."""
    def hook(module, inputs, output):
        blocks = output.detach().double().chunk(len(pairs), dim=1)
        for m, block in zip(pairs, blocks):
            out[m] = block.pow(2).mean().sqrt().cpu()
    return hook
