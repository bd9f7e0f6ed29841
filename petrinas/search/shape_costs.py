"""What a strategy may ask about the cost of seed-shaped models (the seed cell's chain of
`model.seed_op` nodes at a given cells, reductions and nodes) before any training.

Answering means building the models and counting, which the search does not do: it
stays free of torch. petrinas/model_desc/shapes.py answers (`MeasuredShapeCosts`), and
the engine hands that to `strategy_from_config`.
"""

from __future__ import annotations

from typing import Protocol


class ShapeCosts(Protocol):
    def costliest_seed(self, column: str) -> float:
        """The cost (`column`: macs or params) of the config's costliest seed model."""

    def deepest_nodes(self, cells: int, reductions: int, cap: float, column: str) -> int:
        """The most nodes per cell growth can give a model of (cells, reductions) when no
        model costlier than `cap` is grown."""
