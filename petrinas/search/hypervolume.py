"""The hypervolume of an error-vs-cost front: one number for "how good is this frontier".

For minimization of both cost and error, the hypervolume of a set of points is the area
of the region they dominate, bounded by a reference point (ref_cost, ref_error): every
(x, y) with x >= some point's cost, y >= its error, x < ref_cost and y < ref_error. It
grows when a point moves left or down, and only the Pareto front matters.

petrinas measures it in the plane (log10 cost, error), where a model ten times cheaper
counts the same at every scale. Points at or beyond the reference (costlier than
ref_cost, or worse than ref_error) add nothing. Pure functions (numpy only), like hull.py.
"""

from __future__ import annotations

import math
from typing import Sequence


def hypervolume(costs: Sequence[float], errors: Sequence[float], ref_cost: float,
                ref_error: float) -> float:
    """Area dominated by the points (log10 cost, error) below (log10 ref_cost, ref_error).

    Costs must be > 0 (their logarithm is taken) and finite; errors finite. Empty input,
    or no point inside the reference box, gives 0.
    """
    if len(costs) != len(errors):
        raise ValueError(f"{len(costs)} costs but {len(errors)} errors")
    if not (ref_cost > 0 and math.isfinite(ref_cost) and math.isfinite(ref_error)):
        raise ValueError(f"reference point must be finite with cost > 0, got "
                         f"({ref_cost!r}, {ref_error!r})")
    points = []
    for c, e in zip(costs, errors):
        if not (c > 0 and math.isfinite(c) and math.isfinite(e)):
            raise ValueError(f"point ({c!r}, {e!r}) needs a finite cost > 0 and error")
        if c < ref_cost and e < ref_error:
            points.append((math.log10(c), e))
    # Sweep by cost: each point adds the strip between it and the next cheaper-or-equal
    # point's x, below the lowest error seen so far.
    x_ref, area, best = math.log10(ref_cost), 0.0, ref_error
    points.sort()
    for (x, e), x_next in zip(points, [p[0] for p in points[1:]] + [x_ref]):
        best = min(best, e)
        area += (x_next - x) * (ref_error - best)
    return area
