"""The hypervolume of an error-vs-cost front: one number for "how good is this frontier".

For minimization of both cost and error, the hypervolume of a set of points is the area
of the region they dominate, bounded by a reference box: every (x, y) with x >= some
point's cost, y >= its error, cost_floor <= x < ref_cost and y < ref_error. It grows
when a point moves left or down, and only the Pareto front matters.

petrinas measures it in the plane (log10 cost, error), where a model ten times cheaper
counts the same at every scale. Points at or beyond the reference (costlier than
ref_cost, or worse than ref_error) add nothing. A cost below `cost_floor` counts as the
floor: on a log axis without a floor, every halving of the cheapest model's cost adds
another strip as wide as log10(2), so one very cheap model could outweigh everything
else the front does; the floor closes the box. Pure functions, like hull.py.

Two measures:
- `hypervolume(costs, errors, ...)`: the area of the points' own front.
- `selected_hypervolume(costs, val_errors, test_errors, ...)`: at every cost x, the
  model a user would pick under budget x (the least validation error among the points
  that cost at most x) counts with its *test* error. Selecting on validation and
  reporting on test means more models give no more draws at the test set: a model
  whose test error is lucky but whose validation error is not is never picked.
"""

from __future__ import annotations

import math
from typing import Sequence


def hypervolume(costs: Sequence[float], errors: Sequence[float], ref_cost: float,
                ref_error: float, cost_floor: float = 0.0) -> float:
    """Area dominated by the points (log10 cost, error) inside the box from
    (log10 cost_floor, -inf) to (log10 ref_cost, ref_error); cost_floor 0: no floor.

    Costs must be finite and > 0 (their logarithm is taken; >= 0 with a floor), errors
    finite. Empty input, or no point inside the reference box, gives 0.
    """
    return selected_hypervolume(costs, errors, errors, ref_cost, ref_error, cost_floor)


def selected_hypervolume(costs: Sequence[float], val_errors: Sequence[float],
                         test_errors: Sequence[float], ref_cost: float, ref_error: float,
                         cost_floor: float = 0.0) -> float:
    """The area, over log10 cost from the floor to ref_cost, between ref_error and the
    test error of the model picked at each cost on validation error (none picked, or a
    test error at or above ref_error: nothing). With test == val it is `hypervolume`."""
    if not len(costs) == len(val_errors) == len(test_errors):
        raise ValueError(f"{len(costs)} costs, {len(val_errors)} validation errors and "
                         f"{len(test_errors)} test errors")
    if not (ref_cost > 0 and math.isfinite(ref_cost) and math.isfinite(ref_error)):
        raise ValueError(f"reference point must be finite with cost > 0, got "
                         f"({ref_cost!r}, {ref_error!r})")
    if not (0 <= cost_floor < ref_cost):
        raise ValueError(f"cost floor {cost_floor!r} must be >= 0 and below the reference "
                         f"cost {ref_cost!r}")
    points = []
    for c, v, t in zip(costs, val_errors, test_errors):
        if not (math.isfinite(c) and (c > 0 or (cost_floor > 0 and c >= 0))
                and math.isfinite(v) and math.isfinite(t)):
            raise ValueError(f"point ({c!r}, {v!r}, {t!r}) needs a finite cost > 0 and "
                             f"finite errors")
        if c < ref_cost:
            points.append((math.log10(max(c, cost_floor)), v, t))
    # Sweep by cost: between a point and the next one, the pick is the least validation
    # error so far (the cheaper one on a tie), and its test error sets the strip's height.
    x_ref, area, best_val, test = math.log10(ref_cost), 0.0, math.inf, ref_error
    points.sort(key=lambda p: (p[0], p[1]))  # a tie is never broken by test error
    for (x, v, t), x_next in zip(points, [p[0] for p in points[1:]] + [x_ref]):
        if v < best_val:
            best_val, test = v, t
        area += (x_next - x) * max(ref_error - test, 0.0)
    return area
