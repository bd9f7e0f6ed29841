"""The pool of trained models: points (MACs, error) with their sampling counts.

Plain data only (no torch, no Ray), so the strategy that owns it is testable alone and its
state round-trips through JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from petrinas.search import hull


@dataclass
class PoolEntry:
    trial_id: str
    parent_id: str | None
    stage: str                 # seed | search
    macs: int
    params: int
    val_top1: float
    test_top1: float | None
    cells: int
    reductions: int
    nodes: int
    sampled: int = 0           # times chosen as a parent

    @property
    def error(self) -> float:
        return 1.0 - self.val_top1


class Pool:
    def __init__(self) -> None:
        self._entries: dict[str, PoolEntry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, trial_id: str) -> bool:
        return trial_id in self._entries

    def __getitem__(self, trial_id: str) -> PoolEntry:
        return self._entries[trial_id]

    def entries(self) -> list[PoolEntry]:
        return list(self._entries.values())

    def add(self, entry: PoolEntry) -> None:
        if entry.trial_id in self._entries:
            raise ValueError(f"trial {entry.trial_id} is already in the pool")
        self._entries[entry.trial_id] = entry

    def frontier(self) -> list[str]:
        """Trial ids on the lower convex hull of (MACs, error), cheapest first."""
        entries = self.entries()
        idx = hull.lower_hull([e.macs for e in entries], [e.error for e in entries])
        return [entries[i].trial_id for i in idx]

    def band(self, eps: float) -> list[str]:
        """Trial ids within (1 + eps) of the hull: the parent candidates and the gallery."""
        entries = self.entries()
        idx = hull.eps_band([e.macs for e in entries], [e.error for e in entries], eps)
        return [entries[i].trial_id for i in idx]

    def sample_parent(self, rng: np.random.Generator, eps: float) -> str:
        """A parent from the band, favouring less-sampled and cheaper models; counted."""
        band = self.band(eps)
        entries = [self._entries[t] for t in band]
        pick = hull.sample_parent(rng, list(range(len(entries))),
                                  [e.sampled for e in entries], [e.macs for e in entries])
        chosen = entries[pick]
        chosen.sampled += 1
        return chosen.trial_id

    def state_dict(self) -> dict:
        return {"entries": [asdict(e) for e in self._entries.values()]}

    def load_state_dict(self, state: dict) -> None:
        self._entries = {}
        for data in state["entries"]:
            self.add(PoolEntry(**data))
