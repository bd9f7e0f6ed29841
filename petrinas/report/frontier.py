"""The hull and ε-band of a finished stage's rows, for callers that read a run once
(compare, eval, figures); a running stage keeps them incrementally (`state.py`, `Pool`)."""

from __future__ import annotations

from typing import Sequence

from petrinas.search import hull
from petrinas.search.pool import trial_order


def frontier_ids(rows: Sequence[dict], eps: float, *, metric: str = "val_top1",
                 cost_key: str = "macs") -> tuple[list[str], list[str]]:
    """(hull ids, ε-band ids) of the rows that have `metric`, each sorted by cost, ties in
    `trial_order` as `Pool` breaks them: for callers with a finished run's rows (compare,
    eval); the loop uses `Pool`."""
    pts = [r for r in rows if r.get("status") == "ok" and r.get(metric) is not None
           and r.get(cost_key) is not None]
    pts.sort(key=lambda r: trial_order(r["trial_id"]))  # hull.py breaks ties by index
    if not pts:
        return [], []
    costs = [float(r[cost_key]) for r in pts]
    # Clamp: a metric a rounding hair above 1 must not make hull.py reject the pool.
    errors = [min(1.0, max(0.0, 1.0 - float(r[metric]))) for r in pts]
    return ([pts[i]["trial_id"] for i in hull.lower_hull(costs, errors)],
            [pts[i]["trial_id"] for i in hull.eps_band(costs, errors, eps)])
