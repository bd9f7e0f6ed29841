"""The pool of trained models: points (cost, error) with their sampling counts.

Plain data only (no torch, no Ray), so the strategies that own it are testable alone and
its state round-trips through JSON. `cost` is the search's cost axis (`search.cost`:
MACs, parameters or latency); error is `1 - val_top1`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from petrinas.search import hull

COST_AXES = ("macs", "params", "latency_ms")


@dataclass
class PoolEntry:
    trial_id: str
    parent_id: str | None
    stage: str                 # seed | search | random
    cost: float                # the value on the search's cost axis
    val_top1: float
    cells: int
    reductions: int
    nodes: int
    sampled: int = 0           # times chosen as a parent

    @property
    def error(self) -> float:
        return 1.0 - self.val_top1


def entry_from_row(row: dict, cost_key: str, sampled: int = 0) -> PoolEntry:
    """The pool entry of a trial's row (its `cost_key` column is the cost)."""
    return PoolEntry(trial_id=row["trial_id"], parent_id=row.get("parent_id") or None,
                     stage=row["stage"], cost=float(row[cost_key]),
                     val_top1=float(row["val_top1"]), cells=int(row["cells"]),
                     reductions=int(row["reductions"]), nodes=int(row["nodes"]),
                     sampled=sampled)


def trial_order(trial_id: str) -> tuple[int, str]:
    """The order trials were submitted in: ids are a run's counter zero-padded to four
    digits (t0009, t0010, ..., t9999, t10000), so a longer id is a later one."""
    return (len(trial_id), trial_id)


class Pool:
    """Entries in insertion order, with the hull and ε-bands kept up to date as entries
    arrive, so adding a model costs O(hull + band), not O(pool).

    Why that is exact: adding a point only lowers the hull, so the new hull's vertices
    are among the old vertices and the new point, and a point outside the old band stays
    outside the new one. (A point cheaper than all others can raise the hull left of the
    old cheapest point, where no other point lies.)

    Ties (equal cost; equal cost and error) are broken by `trial_order`, never by
    arrival: a resumed run rebuilds its pool in another order than the live run filled
    it, and its band (the parents' candidates, in order) and gallery must not change."""

    def __init__(self) -> None:
        self._entries: dict[str, PoolEntry] = {}
        self._hull: list[str] = []
        self._bands: dict[float, list[str]] = {}   # eps -> band, for the eps asked for

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
        if not self._clearly_above_hull(entry):  # else the hull stays as it is
            self._hull = self._lower_hull(self._hull + [entry.trial_id])
        for eps, band in self._bands.items():
            self._bands[eps] = self._eps_band(band + [entry.trial_id], eps)

    def frontier(self) -> list[str]:
        """Trial ids on the lower convex hull of (cost, error), cheapest first."""
        return list(self._hull)

    def band(self, eps: float) -> list[str]:
        """Trial ids within (1 + eps) of the hull, cheapest first: the parent candidates
        and the gallery."""
        if eps not in self._bands:
            self._bands[eps] = self._eps_band(list(self._entries), eps)
        return list(self._bands[eps])

    def _clearly_above_hull(self, entry: PoolEntry) -> bool:
        """Whether `entry` lies above the hull by more than rounding could explain, so
        that it cannot change it (a quick float test; the exact rational hull is
        recomputed only when this cannot tell)."""
        if not self._hull or entry.cost <= self._entries[self._hull[0]].cost:
            return False
        costs, errors = self._points(self._hull)
        line = float(np.interp(entry.cost, costs, errors))
        return entry.error > line * (1 + 1e-9) + hull.BAND_ABS_TOL

    def _points(self, ids: list[str]) -> tuple[list[float], list[float]]:
        entries = [self._entries[t] for t in ids]
        return [e.cost for e in entries], [e.error for e in entries]

    def _lower_hull(self, ids: list[str]) -> list[str]:
        ids = sorted(ids, key=trial_order)  # hull.py keeps the first of identical points
        return [ids[i] for i in hull.lower_hull(*self._points(ids))]

    def _eps_band(self, ids: list[str], eps: float) -> list[str]:
        """The members of `ids` within (1 + eps) of the pool's hull, cheapest first."""
        if not self._hull:
            return []
        costs, errors = self._points(ids)
        hull_costs, hull_errors = self._points(self._hull)
        bound = (1 + eps) * hull.hull_errors_at(hull_costs, hull_errors,
                                                list(range(len(self._hull))), costs)
        band = [t for t, e, b in zip(ids, errors, bound) if e <= b + hull.BAND_ABS_TOL]
        return sorted(band, key=lambda t: (self._entries[t].cost, trial_order(t)))

    def sample_parent(self, rng: np.random.Generator, candidates: list[str]) -> str:
        """One of `candidates` (pool ids), favouring less-sampled and cheaper ones; its
        sampling count goes up."""
        entries = [self._entries[t] for t in candidates]
        pick = hull.sample_parent(rng, list(range(len(entries))),
                                  [e.sampled for e in entries], [e.cost for e in entries])
        chosen = entries[pick]
        chosen.sampled += 1
        return chosen.trial_id

    def state_dict(self) -> dict:
        # Entries hold scalars only: a shallow copy of each is a full copy (asdict's deep
        # copy costs ten times more, on every snapshot of a long run).
        return {"entries": [dict(vars(e)) for e in self._entries.values()]}

    def load_state_dict(self, state: dict) -> None:
        self._entries, self._hull, self._bands = {}, [], {}
        for data in state["entries"]:
            self.add(PoolEntry(**data))
