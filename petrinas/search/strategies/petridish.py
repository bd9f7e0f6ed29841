"""Petridish: every seed model first, then children of parents sampled near the hull.

Seeds go cheapest first, so the pool spreads over the cost axis early. A child can be
suggested as soon as one model is in the pool, so a large cluster is not idle while the
last, most expensive seeds train. A parent is drawn from the ε-band of the pool's lower
convex hull (less-sampled and cheaper models favoured), among the models whose cost is
within `max_cost`: a model over the budget stays in the pool and on the frontier, but
is never grown (its children would only cost more).

Many slots, few parents: the draw is among the candidates with the fewest children in
flight, so the work in flight spreads over as many parents as the band holds (rather
than dozens of near-identical siblings of the first seed to finish). With
`max_children_in_flight` set, a parent never has more children in flight than that; when
every candidate has that many, the strategy waits for a result instead of starting more
siblings. With one slot, the draw is Petridish's as published.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

from overrides import overrides

from petrinas.search.strategies.base import PoolStrategy
from petrinas.search.strategy import FINISHED, SEARCH, SEED, JobSpec, Suggestion, register


@register("petridish")
class Petridish(PoolStrategy):
    selection = "alpha"  # a child's finalized pairs: the top-k |alpha| of its candidate

    def __init__(self, seed_macros: Sequence[tuple[int, int, int]], *, eps: float = 0.025,
                 max_cost: float = 0.0, seed: int = 0, cost_key: str = "macs",
                 max_children_in_flight: int = 0, max_key: str = "max_macs"):
        """`seed_macros` are (cells, reductions, nodes) triples, trained in this order."""
        super().__init__(seed=seed, cost_key=cost_key)
        self.seed_macros = [tuple(m) for m in seed_macros]
        self.eps = eps
        self.max_cost = max_cost
        self.max_key = max_key       # its config key, for messages
        self.max_children_in_flight = max_children_in_flight
        self.next_seed = 0

    @classmethod
    def from_config(cls, config, shapes=None) -> "Petridish":
        from petrinas.config import MAX_COST_KEYS, cost_column, max_cost, seed_macros

        search = config.search
        return cls(seed_macros(config), eps=search.convex_hull_eps,
                   max_cost=max_cost(config), seed=config.seed,
                   cost_key=cost_column(config), max_key=MAX_COST_KEYS[search.cost],
                   max_children_in_flight=search.max_children_in_flight)

    # -------------------------------------------------------------------- decisions
    @overrides
    def suggest(self, trial_id: str) -> Suggestion:
        if self.is_finished():
            return FINISHED
        if self.next_seed < len(self.seed_macros):
            self.next_seed += 1
            return self._start(trial_id, JobSpec(SEED, macro=self.seed_macros[self.next_seed - 1]))
        parent = self._pick_parent()
        if parent is None:
            return None  # seeds still training
        return self._start(trial_id, JobSpec(SEARCH, parent_id=parent,
                                             selection=self.selection))

    def parent_candidates(self) -> list[str]:
        """The models a parent is drawn from: the ε-band, within the cost budget."""
        band = self.pool.band(self.eps)
        if not self.max_cost:
            return band
        return [t for t in band if self.pool[t].cost <= self.max_cost]

    def _pick_parent(self) -> str | None:
        return self._draw(self.parent_candidates())

    def _draw(self, candidates: list[str]) -> str | None:
        """A parent among the least busy `candidates` (None: wait for a result)."""
        eligible = self._least_busy(candidates)
        return self.pool.sample_parent(self.rng, eligible) if eligible else None

    def _least_busy(self, candidates: list[str]) -> list[str]:
        """The candidates with the fewest children in flight, within the cap."""
        if not candidates:
            return []
        busy = Counter(spec.parent_id for spec in self.in_flight.values()
                       if spec.stage == SEARCH)
        fewest = min(busy[t] for t in candidates)
        if self.max_children_in_flight and fewest >= self.max_children_in_flight:
            return []
        return [t for t in candidates if busy[t] == fewest]

    @overrides
    def _replay(self, spec: JobSpec) -> None:
        if spec.stage == SEED:
            self.next_seed += 1
        elif spec.parent_id in self.pool:
            self.pool[spec.parent_id].sampled += 1

    @overrides
    def is_finished(self) -> bool:
        return not self.in_flight and bool(self.finish_reason())

    @overrides
    def finish_reason(self) -> str:
        if self.next_seed < len(self.seed_macros) or self.in_flight:
            return ""
        if not len(self.pool):
            return "all seeds failed"
        if not self.parent_candidates():
            return f"no model within search.{self.max_key} to grow"
        return ""

    # ---------------------------------------------------------------- persistence
    @overrides
    def _extra_state(self) -> dict[str, Any]:
        return {"next_seed": self.next_seed}

    @overrides
    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.next_seed = state["next_seed"]
