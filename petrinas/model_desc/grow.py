"""Growth: add a candidate node to a trained parent, then finalize it into a plain node.

Both steps work on (description, state_dict) pairs so that a child always starts from
its parent's trained weights and computes exactly the parent's function:
- `add_candidate` keeps every parent weight; the candidate's output is stop-forwarded.
- `finalize` turns the top-k (input, op) pairs of the candidate into a node that keeps
  their trained weights; the cell projection's new input columns start at zero, so the
  node joins the cell without changing its output, and still learns (its output is not
  zero once stop-forward is gone).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterator, Sequence

import torch
from torch import nn

from petrinas.model_desc.candidate import pair_state
from petrinas.model_desc.desc import (CELL_KINDS, CandidateDesc, CellDesc, EdgeDesc,
                                      ModelDesc, NodeDesc, OpDesc)
from petrinas.model_desc.model import CellNetwork, build_model


def add_candidate(desc: ModelDesc, candidate_ops: Sequence[str], affine: bool = True
                  ) -> ModelDesc:
    """The description with a candidate node in each cell kind the model uses (a model
    without reduction cells gets none in its unused reduction cell), reading every state.

    `affine=False` builds the candidate's ops with BatchNorms that learn no scale (as
    DARTS searches): an op's output then has unit scale whatever its weights, so its
    |alpha| alone says how much it contributes. With a learned scale, an op can grow its
    BatchNorm's instead of its alpha, and the parameter-free skip_connect cannot."""
    def grow(cell: CellDesc) -> CellDesc:
        if cell.candidate is not None:
            raise ValueError("the model already has a candidate node; finalize it first")
        return replace(cell, candidate=CandidateDesc(inputs=tuple(range(cell.n_states)),
                                                     ops=tuple(candidate_ops),
                                                     affine=affine))
    used = desc.used_kinds
    return desc.with_cells(*(grow(getattr(desc, kind)) if kind in used
                             else getattr(desc, kind) for kind in CELL_KINDS))


def grow_model(parent: ModelDesc, parent_state: dict[str, torch.Tensor],
               candidate_ops: Sequence[str], affine: bool = True) -> CellNetwork:
    """The parent with a candidate node, holding all of the parent's trained weights.

    The parent's weights must fit exactly: a key missing from them would leave a weight
    at its random initialization, and an extra one means another architecture."""
    model = build_model(add_candidate(parent, candidate_ops, affine))
    expected = {key for key in model.state_dict() if ".candidate." not in key}
    missing = sorted(expected - parent_state.keys())
    unexpected = sorted(parent_state.keys() - expected)
    if missing or unexpected:
        raise ValueError(f"parent weights do not fit its description: missing "
                         f"{missing[:3]}, unexpected {unexpected[:3]}")
    model.load_state_dict(parent_state, strict=False)  # only the candidate stays fresh
    return model


def alphas(model: nn.Module) -> list[nn.Parameter]:
    """Every candidate's alpha vector (the parameters the L1 term acts on)."""
    return [p for name, p in model.named_parameters() if name.endswith("candidate.alpha")]


def l1_penalty(model: nn.Module) -> torch.Tensor:
    return sum(p.abs().sum() for p in alphas(model))


def select_pairs(desc: ModelDesc, state: dict[str, torch.Tensor], k: int, *,
                 scores: dict[int, torch.Tensor] | None = None) -> dict[str, list[int]]:
    """Per cell kind the model uses, the indices into candidate.pairs of the k best
    pairs, never `none`: by |alpha|, or by `scores` (per cell index, a score per pair:
    pair_scores.py), summed over the cells of that kind (every cell of a kind grows the
    same node)."""
    return {kind: sorted(ranked[:k])
            for kind, ranked in ranked_pairs(desc, state, scores=scores).items()}


def ranked_pairs(desc: ModelDesc, state: dict[str, torch.Tensor], *,
                 scores: dict[int, torch.Tensor] | None = None) -> dict[str, list[int]]:
    """Per cell kind the model uses, the non-`none` pairs' indices, best first, as
    `select_pairs` ranks them (ties: the smaller index first)."""
    ranked = {}
    for kind in desc.used_kinds:
        cand = getattr(desc, kind).candidate
        total = torch.zeros(len(cand.pairs), dtype=torch.float64)
        for i in range(desc.cells):
            if _is_kind(desc, i, kind):
                total += (state[f"cells.{i}.candidate.alpha"].detach().double().abs()
                          if scores is None else scores[i].double())
        usable = [m for m, (_, op) in enumerate(cand.pairs) if op != "none"]
        ranked[kind] = sorted(usable, key=lambda m: (-float(total[m]), m))
    return ranked


def next_best_choices(ranked: dict[str, list[int]], k: int) -> Iterator[dict[str, list[int]]]:
    """The pair sets after the top-k of `ranked`, nearest first: one kind's k-th pair
    swapped for the (k+1)-th, then the other kind's; then for the (k+2)-th; and so on.
    What a child whose top-k pairs make a model the run already has tries next."""
    if k < 1:
        return
    top = {kind: sorted(pairs[:k]) for kind, pairs in ranked.items()}
    for extra in range(k, max(len(pairs) for pairs in ranked.values())):
        for kind, pairs in ranked.items():
            if extra < len(pairs):
                yield {**top, kind: sorted(pairs[:k - 1] + [pairs[extra]])}


def random_pairs(desc: ModelDesc, k: int, rng: torch.Generator) -> dict[str, list[int]]:
    """Per cell kind the model uses, k indices into candidate.pairs drawn uniformly
    without replacement among the non-`none` pairs: the random-selection baseline of
    `select_pairs`."""
    chosen = {}
    for kind in desc.used_kinds:
        usable = [m for m, (_, op) in enumerate(getattr(desc, kind).candidate.pairs)
                  if op != "none"]
        order = torch.randperm(len(usable), generator=rng).tolist()
        chosen[kind] = sorted(usable[i] for i in order[:k])
    return chosen


def pair_indices(desc: ModelDesc, chosen: dict[str, list]) -> dict[str, list[int]]:
    """The indices into each kind's candidate.pairs of the (input, op) pairs `chosen`
    names, as a child's notes record them ({"normal": [[1, "sep_conv_3x3"], ...]}): the
    inverse of what a search job writes, to finalize a recorded child again."""
    out = {}
    for kind, pairs in chosen.items():
        known = getattr(desc, kind).candidate.pairs
        try:
            out[kind] = sorted(known.index((int(i), str(op))) for i, op in pairs)
        except ValueError:
            raise ValueError(f"{kind} pairs {pairs} are not all pairs of the candidate "
                             f"({known})") from None
    return out


def _is_kind(desc: ModelDesc, index: int, kind: str) -> bool:
    return (index in desc.reduction_indices) == (kind == "reduce")


FINALIZE_INITS = ("inherit", "fresh")


def finalize(desc: ModelDesc, state: dict[str, torch.Tensor], k: int, *,
             chosen: dict[str, list[int]] | None = None, init: str = "inherit"
             ) -> tuple[ModelDesc, dict[str, torch.Tensor]]:
    """Turn each cell's candidate into an ordinary node of its chosen (input, op) pairs
    (by default the top-k |alpha|, `select_pairs`).

    Returns the finalized description and a state_dict for it in which the projection's
    new columns are zero, so the child computes exactly the parent's function. The new
    node's ops hold the candidate's trained weights (`init="inherit"`) or a fresh
    initialization from torch's generator (`init="fresh"`): the candidate was trained as
    an addition to the cell output, while the node joins before the 1x1 projection, so
    its inherited weights were trained for another role (an ablation switch)."""
    if init not in FINALIZE_INITS:
        raise ValueError(f"init must be one of {FINALIZE_INITS}, got {init!r}")
    chosen = select_pairs(desc, state, k) if chosen is None else chosen
    if set(chosen) != set(desc.used_kinds):
        raise ValueError(f"pairs chosen for cell kinds {sorted(chosen)}, the model uses "
                         f"{sorted(desc.used_kinds)}")
    cells = {}
    for kind in desc.used_kinds:
        cell = getattr(desc, kind)
        pairs = cell.candidate.pairs
        node = NodeDesc(edges=tuple(EdgeDesc(pairs[m][0], OpDesc(pairs[m][1]))
                                    for m in chosen[kind]))
        cells[kind] = CellDesc(nodes=cell.nodes + (node,))
    # An unused reduction cell is stored as a copy of the normal cell, as seeds store it:
    # the model never runs it, and a description stays valid (both kinds, equal nodes).
    new_desc = desc.with_cells(cells["normal"], cells.get("reduce", cells["normal"]))
    # Everything but the candidate is carried over; its chosen pairs' weights are sliced
    # out of its grouped ops into the new node's edges.
    new_state = {key: value for key, value in state.items() if not _is_candidate_key(key)}
    for i in range(desc.cells):
        cell, reduction = desc.cell_desc(i), i in desc.reduction_indices
        node = len(cell.nodes)
        for j, m in enumerate(chosen["reduce" if reduction else "normal"]):
            for key, value in pair_state(state, f"cells.{i}.candidate.", cell.candidate,
                                         reduction, m).items():
                new_state[f"cells.{i}.nodes.{node}.edges.{j}.{key}"] = value
    if not desc.normal.candidate.affine:
        _add_identity_affine(new_desc, new_state)
    if init == "fresh":
        fresh = build_model(new_desc).state_dict()
        for key in new_state:
            if _is_new_node_key(desc, key):
                new_state[key] = fresh[key]
    for i in range(desc.cells):
        _widen_projection(new_state, i, desc.cell_desc(i))
    return new_desc, new_state


def _add_identity_affine(desc: ModelDesc, state: dict[str, torch.Tensor]) -> None:
    """The node's ops are ordinary ops, whose BatchNorms learn a scale and shift; from
    a candidate without them, they start at scale 1 and shift 0, which computes exactly
    what the candidate's ops computed."""
    for key, value in build_model(desc).state_dict().items():
        if key not in state and _is_new_node_key(desc, key, grown=True):
            kind = key.rsplit(".", 1)[1]
            if kind not in ("weight", "bias") or value.dim() != 1:
                raise KeyError(f"{key}: missing from the candidate's weights")
            state[key] = torch.ones_like(value) if kind == "weight" else \
                torch.zeros_like(value)


def _is_candidate_key(key: str) -> bool:
    parts = key.split(".")
    return len(parts) > 2 and parts[0] == "cells" and parts[2] == "candidate"


def _is_new_node_key(desc: ModelDesc, key: str, grown: bool = False) -> bool:
    """A key of the node finalize adds: the node after `desc`'s last (`grown`: `desc`
    already holds it as its last)."""
    parts = key.split(".")
    return (len(parts) > 3 and parts[0] == "cells" and parts[2] == "nodes"
            and int(parts[3]) == len(desc.cell_desc(int(parts[1])).nodes) - grown)


def _widen_projection(state: dict[str, torch.Tensor], index: int, old_cell: CellDesc) -> None:
    key = f"cells.{index}.proj.conv.weight"
    weight = state[key]
    channels = weight.shape[0]
    assert weight.shape[1] == channels * len(old_cell.nodes), key
    zeros = weight.new_zeros(channels, channels, *weight.shape[2:])
    state[key] = torch.cat([weight, zeros], dim=1)
