"""Baseline: random search, the classic NAS baseline.

Every trial is a new random model, trained from scratch for the seed epochs plus the
post-train epochs (what a Petridish child has had by the end of its post-training, less
the search phase; pipeline.run_random). Its (cells, reductions) shape is drawn uniformly
from the valid seed shapes (`search.seeds` ranges), and its node count from the seed
ranges' least up to the most growth can reach for that shape (`max_nodes`): growth
adds one node per round and never grows a model above the cost cap, so from_config takes
the deepest seed-shaped cell at or under the cap, plus the node its growth would add
(shapes.deepest_nodes), and no deeper than one node per trial the budget leaves after
the seeds. The cap is `search.max_macs` (or max_params) when set, else the hypervolume
reference cost (a costlier model adds nothing to the measure); on the latency axis, ten
times the costliest seed's MACs. The count is drawn uniformly, or with
`search.random_nodes: log_uniform` log-uniformly: a model's cost grows about linearly with
its nodes, so that spreads costs evenly on a log scale, as a frontier's models are, and
spends most of the budget on cheap models (uniform counts up to growth's reach put the
median model at about half the cap). Each cell type gets its own random structure:
every node takes `edges_per_node` distinct (input, op) pairs, drawn uniformly from the
earlier states of its cell and the non-`none` candidate ops.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from overrides import overrides

from petrinas.config import cost_column, max_cost, seed_macros
from petrinas.search.shape_costs import ShapeCosts
from petrinas.search.strategies.base import PoolStrategy
from petrinas.search.strategy import RANDOM, JobSpec, Suggestion, register


NODE_DRAWS = ("uniform", "log_uniform")


@register("random_search")
class RandomSearch(PoolStrategy):
    def __init__(self, macros: Sequence[tuple[int, int, int]], ops: Sequence[str],
                 edges_per_node: int, *, seed: int = 0, cost_key: str = "macs",
                 max_nodes: Mapping[tuple[int, int], int] | None = None,
                 nodes_draw: str = "uniform"):
        """`macros`: the (cells, reductions, nodes) seed shapes. `max_nodes`: per
        (cells, reductions), the most nodes to draw; None: the seed shapes' own counts.
        `nodes_draw`: "uniform" or "log_uniform", how a count is drawn up to it."""
        if nodes_draw not in NODE_DRAWS:
            raise ValueError(f"nodes_draw must be one of {', '.join(NODE_DRAWS)}, "
                             f"got {nodes_draw!r}")
        super().__init__(seed=seed, cost_key=cost_key)
        self.macros = [tuple(m) for m in macros]
        self.ops = [op for op in ops if op != "none"]
        self.edges_per_node = edges_per_node
        self.max_nodes = dict(max_nodes) if max_nodes is not None else None
        self.nodes_draw = nodes_draw
        self.shapes = sorted({m[:2] for m in self.macros})
        self.least_nodes = min(m[2] for m in self.macros)

    @classmethod
    def from_config(cls, config, shapes: ShapeCosts | None = None) -> "RandomSearch":
        if shapes is None:
            raise TypeError("random_search measures its seed shapes: from_config needs "
                            "shapes (petrinas.model_desc.shapes.MeasuredShapeCosts)")
        return cls(seed_macros(config), config.model.candidate_ops, config.model.top_k,
                   seed=config.seed, cost_key=cost_column(config),
                   max_nodes=growth_reach(config, shapes),
                   nodes_draw=config.search.random_nodes)

    @overrides
    def suggest(self, trial_id: str) -> Suggestion:
        if self.max_nodes is None:
            macro = self.macros[int(self.rng.integers(len(self.macros)))]
        else:
            cells, reductions = self.shapes[int(self.rng.integers(len(self.shapes)))]
            nodes = self._draw_nodes(self.max_nodes[(cells, reductions)])
            macro = (cells, reductions, nodes)
        cells = {kind: self._random_cell(macro[2]) for kind in ("normal", "reduce")}
        return self._start(trial_id, JobSpec(RANDOM, macro=macro, cells=cells))

    def _draw_nodes(self, most: int) -> int:
        """A node count from `least_nodes` to `most`, both included."""
        if self.nodes_draw == "uniform":
            return int(self.rng.integers(self.least_nodes, most + 1))
        # floor(exp(u)), u uniform on [log least, log(most + 1)): P(n) is proportional
        # to log((n + 1) / n), the share of [n, n + 1) on a log scale.
        u = self.rng.uniform(math.log(self.least_nodes), math.log(most + 1))
        return min(int(math.exp(u)), most)  # min: exp may round up to most + 1

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


def growth_reach(config, shapes: ShapeCosts) -> dict[tuple[int, int], int]:
    """Per (cells, reductions) of the seed shapes, the most nodes growth can reach under
    the config's cost cap (see the module's docstring), the costs as `shapes` answers."""
    column = cost_column(config)
    if column == "latency_ms":   # no latency without a device: cap the MACs instead
        column, cap = "macs", 10.0 * shapes.costliest_seed("macs")
    else:
        cap = max_cost(config) or config.search.hv_ref_cost \
            or 10.0 * shapes.costliest_seed(column)
    macros = seed_macros(config)
    # One node per growth round, one round per trial after the seeds: the trial budget
    # bounds the depth too.
    by_trials = config.search.seeds.nodes[1] + max(config.search.max_trials - len(macros), 0)
    return {(cells, reductions): min(shapes.deepest_nodes(cells, reductions, cap, column),
                                     by_trials)
            for cells, reductions in sorted({m[:2] for m in macros})}
