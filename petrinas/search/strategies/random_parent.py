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
    def _pick_parent(self) -> str | None:
        candidates = self.parent_candidates()
        if not candidates:
            return None
        chosen = self.pool[candidates[int(self.rng.integers(len(candidates)))]]
        chosen.sampled += 1
        return chosen.trial_id
