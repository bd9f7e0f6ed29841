"""Baseline: random search, the classic NAS baseline.

Every trial is a new random model, trained from scratch for the seed epochs plus the
post-train epochs (what a Petridish child has had by the end of its post-training, less
the search phase). Its macro shape is drawn uniformly from the valid seed shapes
(`search.seeds` ranges); each cell type gets its own random structure: every node takes
`edges_per_node` distinct (input, op) pairs, drawn uniformly from the earlier states of
its cell and the non-`none` candidate ops.
"""

from __future__ import annotations

from typing import Sequence

from overrides import overrides

from petrinas.search.strategies.base import PoolStrategy
from petrinas.search.strategy import RANDOM, JobSpec, Suggestion, register


@register("random_search")
class RandomSearch(PoolStrategy):
    def __init__(self, macros: Sequence[tuple[int, int, int]], ops: Sequence[str],
                 edges_per_node: int, *, seed: int = 0, cost_key: str = "macs"):
        """`macros`: the (cells, reductions, nodes) shapes to draw from."""
        super().__init__(seed=seed, cost_key=cost_key)
        self.macros = [tuple(m) for m in macros]
        self.ops = [op for op in ops if op != "none"]
        self.edges_per_node = edges_per_node

    @classmethod
    def from_config(cls, config) -> "RandomSearch":
        from petrinas.config import cost_column, seed_macros

        return cls(seed_macros(config), config.model.candidate_ops, config.model.top_k,
                   seed=config.seed, cost_key=cost_column(config))

    @overrides
    def suggest(self, trial_id: str) -> Suggestion:
        macro = self.macros[int(self.rng.integers(len(self.macros)))]
        nodes = macro[2]
        cells = {kind: self._random_cell(nodes) for kind in ("normal", "reduce")}
        return self._start(trial_id, JobSpec(RANDOM, macro=macro, cells=cells))

    def _random_cell(self, nodes: int) -> list[list[list]]:
        """`nodes` nodes, each a list of [input, op] edges reading earlier states."""
        cell = []
        for k in range(nodes):
            pairs = [(state, op) for state in range(2 + k) for op in self.ops]
            picks = self.rng.choice(len(pairs), size=min(self.edges_per_node, len(pairs)),
                                    replace=False)
            cell.append([[pairs[int(m)][0], pairs[int(m)][1]] for m in sorted(picks)])
        return cell

    @overrides
    def is_finished(self) -> bool:
        return False  # as many random models as the budget allows

    @overrides
    def finish_reason(self) -> str:
        return ""
