"""How finalize ranks a candidate's (input, op) pairs: a registry of scores.

A score reads a grown model after its search phase and gives, per index of a cell with a
candidate, one float64 value per pair (in candidate.pairs order; higher is better;
`none` is never ranked whatever it scores). `grow.ranked_pairs` sums them over the cells
of a kind, since every cell of a kind grows the same node. `search.pair_score` names
one; benchmarks/pair_value.py measures them all on the same search phases.

The scores that read data (`Evidence.signals`) see one batch of training examples,
measured in one training-mode forward and backward (pair_signals.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import torch

from petrinas.model_desc.model import CellNetwork
from petrinas.model_desc.pair_signals import CellSignals, cell_signals

CellScores = dict[int, torch.Tensor]


class Evidence:
    """What a score may read of a searched model: its alphas, and its cell signals on
    `batch` (x, y), measured once on first use. Measuring moves BatchNorm statistics
    and fills .grad: take the model's weights first."""

    def __init__(self, model: CellNetwork, batch: tuple[torch.Tensor, torch.Tensor] | None):
        self.model = model
        self.batch = batch

    @cached_property
    def alphas(self) -> CellScores:
        return {i: cell.candidate.alpha.detach().double().cpu()
                for i, cell in enumerate(self.model.cells) if cell.candidate is not None}

    @cached_property
    def signals(self) -> dict[int, CellSignals]:
        if self.batch is None:
            raise ValueError("this pair score reads data: give Evidence a batch")
        return cell_signals(self.model, *self.batch)


@dataclass(frozen=True)
class PairScore:
    name: str
    fn: Callable[[Evidence], CellScores]
    reads_data: bool
    doc: str


PAIR_SCORES: dict[str, PairScore] = {}


def register_score(name: str, *, reads_data: bool, doc: str):
    def decorate(fn: Callable[[Evidence], CellScores]):
        if name in PAIR_SCORES:
            raise ValueError(f"pair score {name!r} is registered twice")
        PAIR_SCORES[name] = PairScore(name, fn, reads_data, doc)
        return fn
    return decorate


def get_score(name: str) -> PairScore:
    try:
        return PAIR_SCORES[name]
    except KeyError:
        raise KeyError(f"unknown pair score {name!r}; known: "
                       f"{', '.join(sorted(PAIR_SCORES))}") from None


def score_pairs(name: str, evidence: Evidence) -> CellScores:
    return get_score(name).fn(evidence)


# ------------------------------------------------------------------------ the scores

@register_score("alpha", reads_data=False, doc="|alpha| (the paper's rule)")
def alpha_score(evidence: Evidence) -> CellScores:
    return {i: a.abs() for i, a in evidence.alphas.items()}


@register_score("alpha_rms", reads_data=True,
                doc="|alpha| times the RMS of the pair's op output (the size of what it "
                    "added to the cell)")
def alpha_rms_score(evidence: Evidence) -> CellScores:
    out = {}
    for i, alpha in evidence.alphas.items():
        rms = torch.zeros_like(alpha)
        for m, h in evidence.signals[i].pairs.items():
            rms[m] = h.pow(2).mean().sqrt()
        out[i] = alpha.abs() * rms
    return out


@register_score("alpha_cell", reads_data=False,
                doc="|alpha| as a share of its cell's (so no one cell dominates a kind's "
                    "sum)")
def alpha_cell_score(evidence: Evidence) -> CellScores:
    return {i: _share(a.abs()) for i, a in evidence.alphas.items()}


@register_score("gradient", reads_data=True,
                doc="the squared norm of the finalized node's new projection columns' "
                    "gradient: how fast the pair starts to lower the loss")
def gradient_score(evidence: Evidence) -> CellScores:
    out = {}
    for i, sig in evidence.signals.items():
        score = torch.zeros(sig.n_pairs, dtype=torch.float64)
        for m, h in sig.pairs.items():
            score[m] = (sig.grad.T @ h.relu()).pow(2).sum()
        out[i] = score
    return out


@register_score("residual", reads_data=True,
                doc="the share of the loss gradient that the pair's new columns fit by "
                    "least squares beyond what the cell's own nodes already fit")
def residual_score(evidence: Evidence) -> CellScores:
    out = {}
    for i, sig in evidence.signals.items():
        basis = _orthonormal(sig.nodes)
        grad = sig.grad - basis @ (basis.T @ sig.grad)
        score = torch.zeros(sig.n_pairs, dtype=torch.float64)
        for m, h in sig.pairs.items():
            features = h.relu()
            features = features - basis @ (basis.T @ features)
            score[m] = _fitted_energy(features, grad)
        out[i] = score
    return out


def _share(values: torch.Tensor) -> torch.Tensor:
    total = values.sum()
    return values / total if total > 0 else values


def _orthonormal(x: torch.Tensor, rtol: float = 1e-10) -> torch.Tensor:
    """An orthonormal basis (P x r) of the column space of x (P x n), rank-revealing."""
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    keep = s > rtol * (s[0] if len(s) else 0)
    return u[:, keep]


def _fitted_energy(features: torch.Tensor, target: torch.Tensor) -> float:
    """||projection of target onto the column space of features||^2."""
    basis = _orthonormal(features)
    return float((basis.T @ target).pow(2).sum())
