"""What the search space's shapes cost, measured from the config alone: the floor of the
hypervolume box (the cheapest seed) and how deep random search may draw (the deepest
cells under a cost cap). Every run of a config gets the same answers, before any
training. The search asks through `MeasuredShapeCosts` (search/shape_costs.py), so it
builds no model itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from petrinas.config import Config, seed_macros
from petrinas.model_desc.builder import build_seed, costliest_seed
from petrinas.model_desc.cost import cost
from petrinas.model_desc.model import build_model

MAX_NODES = 64   # the deepest cell deepest_nodes ever reports (it measures, so it is capped)


def shape_cost(config: Config, cells: int, reductions: int, nodes: int,
               column: str = "macs") -> float:
    """The MACs (or params) of the seed-shaped model of (cells, reductions, nodes): every
    node one `model.seed_op` edge."""
    desc = build_seed(config, cells=cells, reductions=reductions, nodes=nodes)
    return float(cost(build_model(desc), desc.input_shape)[column])


def cheapest_seed(config: Config, column: str = "macs") -> float:
    """The cost of the cheapest seed model of the config's seed ranges. Only the smallest
    shape of each reduction count is measured: fewer cells or nodes never cost more,
    whereas a reduction both shrinks the maps and widens them."""
    smallest: dict[int, tuple[int, int, int]] = {}
    for cells, reductions, nodes in seed_macros(config):
        if reductions not in smallest or (cells, nodes) < smallest[reductions][::2]:
            smallest[reductions] = (cells, reductions, nodes)
    return min(shape_cost(config, *macro, column) for macro in smallest.values())


def deepest_nodes(config: Config, cells: int, reductions: int, cap: float,
                  column: str = "macs") -> int:
    """The most nodes per cell growth can give a model of (cells, reductions) when no
    model costlier than `cap` is grown: the deepest seed-shaped cell at or under the cap,
    plus the one node its growth adds; never fewer than the seed ranges' most, never
    more than MAX_NODES.

    A seed-shaped cell's cost is linear in its nodes (each node is one op on the cell's
    maps, and the output projection gains one block of input columns per node), so two
    measurements give it (checked in tests/test_strategy.py)."""
    low = config.search.seeds.nodes[1]       # always allowed
    first = shape_cost(config, cells, reductions, low, column)
    if first > cap:
        return low
    per_node = shape_cost(config, cells, reductions, low + 1, column) - first
    under = low + int((cap - first) // per_node) if per_node > 0 else MAX_NODES
    return min(under + 1, MAX_NODES)


@dataclass(frozen=True)
class MeasuredShapeCosts:
    """The answers a strategy may ask for (search/shape_costs.py: ShapeCosts) about the
    seed-shaped models of `config`, measured when asked."""
    config: Config

    def costliest_seed(self, column: str) -> float:
        return costliest_seed(self.config, column)

    def deepest_nodes(self, cells: int, reductions: int, cap: float, column: str) -> int:
        return deepest_nodes(self.config, cells, reductions, cap, column)
