"""Baseline: Petridish growth, parents drawn uniformly from the whole pool.

The ablation of the hull and its ε-band: everything as in Petridish (seeds, growth,
top-k |alpha| selection, the cost budget) but the parent, which is any pool model within
the budget, each equally likely.
"""

from overrides import overrides

from petrinas.search.strategies.petridish import Petridish
from petrinas.search.strategy import register


@register("random_parent")
class RandomParent(Petridish):
    @overrides
    def parent_candidates(self) -> list[str]:
        return [e.trial_id for e in self.pool.entries()
                if not self.max_cost or e.cost <= self.max_cost]

    @overrides
    def _draw(self, candidates: list[str]) -> str | None:
        eligible = self._least_busy(candidates)
        if not eligible:
            return None
        chosen = self.pool[eligible[int(self.rng.integers(len(eligible)))]]
        chosen.sampled += 1
        return chosen.trial_id
