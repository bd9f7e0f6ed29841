"""The cost/error lower convex hull that drives Petridish's choice of parents.

Every trained model in the search pool is a point (cost, error): cost is its number of
multiply-accumulates (MACs, >= 0) and error is `1 - val_top1`, in [0, 1]. Petridish only
expands models that are on, or within a relative margin `eps` of, the LOWER CONVEX HULL
of these points, and only the part of that hull that still buys error with cost: from
the cheapest model down to the most accurate one. Among those it favours models that
are cheap and that have been picked as parents fewer times.

Everything here is a pure function of its arguments (numpy only; no torch, no ray), so
the search loop can call it on a snapshot of its pool and tests can check it exhaustively.

Conventions shared by all functions:

* Points are given as two parallel sequences, `costs` and `errors`; results are indices
  into them.
* The hull is computed with exact rational arithmetic (`fractions.Fraction` of the given
  floats or ints), so whether three points turn left, right or are collinear never
  depends on rounding. Interpolating along the hull (`hull_error_at`) is done in floats.
* Hull vertices are STRICTLY convex: a point in the middle of a straight hull segment is
  not a vertex. Such points are still "on the hull line", so `eps_band` (even with
  eps=0) includes them; this keeps the vertex list minimal and unambiguous while no
  model on the frontier is ever left out of the parent pool.
* Points sharing a cost: only the lowest error can be a vertex. Identical points: only
  the smallest index is a vertex (or a Pareto point); the others are in the band.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Sequence

import numpy as np

# Absolute slack for "on the hull line": interpolation in floats can be off by a few ulps,
# and a hull vertex must always be in its own band.
BAND_ABS_TOL = 1e-12


def _exact(values: Sequence[float], name: str, lo: float, hi: float) -> list[Fraction]:
    """`values` as exact rationals, after checking each is finite and in [lo, hi]."""
    out = []
    for i, v in enumerate(values):
        # Ints (MAC counts may exceed 2**53) stay exact; everything else goes via float.
        if isinstance(v, (int, np.integer)):
            x = Fraction(int(v))
        elif math.isfinite(float(v)):
            x = Fraction(float(v))
        else:
            raise ValueError(f"{name}[{i}] = {v!r} is not finite")
        if not (lo <= x <= hi):
            raise ValueError(f"{name}[{i}] = {v!r} is outside [{lo}, {hi}]")
        out.append(x)
    return out


def _points(costs: Sequence[float], errors: Sequence[float]) -> tuple[list[Fraction], list[Fraction]]:
    """Validated exact (costs, errors); raises ValueError on bad lengths or values."""
    if len(costs) != len(errors):
        raise ValueError(f"{len(costs)} costs but {len(errors)} errors")
    return _exact(costs, "costs", 0, math.inf), _exact(errors, "errors", 0, 1)


def _cross(o: tuple[Fraction, Fraction], a: tuple[Fraction, Fraction],
           b: tuple[Fraction, Fraction]) -> Fraction:
    """z of (a - o) x (b - o): > 0 for a left (counter-clockwise) turn o -> a -> b."""
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _sorted_order(c: list[Fraction], e: list[Fraction]) -> list[int]:
    """Indices by (cost, error, index): the order both the hull and the front sweep use."""
    return sorted(range(len(c)), key=lambda i: (c[i], e[i], i))


def lower_hull(costs: Sequence[float], errors: Sequence[float]) -> list[int]:
    """Vertices of the lower convex hull, cheapest first, cut at the lowest error.

    Only the decreasing part of the hull is returned: from the cheapest point (lowest
    error among the cheapest, smallest index among identical ones) to the cheapest point
    of minimum error. Costs strictly increase and errors strictly decrease along it, and
    slopes strictly increase (become less negative). Collinear points in the middle of a
    segment are not vertices (see the module docstring). Empty input gives [].
    """
    c, e = _points(costs, errors)
    hull: list[int] = []
    last_cost: Fraction | None = None
    # Andrew's monotone chain, lower half. Sorting by (cost, error, index) and skipping
    # repeated costs leaves, per cost, the lowest error with the smallest index.
    for i in _sorted_order(c, e):
        if c[i] == last_cost:
            continue
        last_cost = c[i]
        p = (c[i], e[i])
        # Pop on "not a strict left turn" so collinear middle points are dropped too.
        while len(hull) >= 2 and _cross((c[hull[-2]], e[hull[-2]]),
                                        (c[hull[-1]], e[hull[-1]]), p) <= 0:
            hull.pop()
        hull.append(i)
    if not hull:
        return []
    # The cheapest point of minimum error is always a hull vertex; past it the hull rises,
    # and a rising segment offers more cost for no accuracy, so it is never a target.
    best = min(e[i] for i in hull)
    cut = next(k for k, i in enumerate(hull) if e[i] == best)
    return hull[:cut + 1]


def hull_error_at(costs: Sequence[float], errors: Sequence[float], hull: list[int],
                  cost: float) -> float:
    """The hull's piecewise-linear error at `cost`, flat beyond its first and last vertex.

    `hull` is what `lower_hull(costs, errors)` returned (any list of indices with strictly
    increasing costs works). At a vertex's own cost the vertex's error is returned exactly.
    """
    return float(hull_errors_at(costs, errors, hull, [cost])[0])


def hull_errors_at(costs: Sequence[float], errors: Sequence[float], hull: list[int],
                   at: Sequence[float]) -> np.ndarray:
    """`hull_error_at` at every cost of `at`, in one pass (numpy's interpolation, which
    is flat beyond the ends and exact at the vertices)."""
    if not hull:
        raise ValueError("hull is empty")
    hc = np.array([float(costs[i]) for i in hull])
    he = np.array([float(errors[i]) for i in hull])
    return np.interp(np.asarray(at, dtype=float), hc, he)


def eps_band(costs: Sequence[float], errors: Sequence[float], eps: float) -> list[int]:
    """Indices of the points with error <= (1 + eps) * hull error at their cost.

    Sorted by cost, then index. With eps = 0 this is every point on the hull line: the
    vertices, collinear points between them, duplicates of vertices, and more expensive
    points with the minimum error (the hull is extended flat to the right). An absolute
    slack of `BAND_ABS_TOL` absorbs interpolation rounding. `eps` must be finite and
    >= 0 (an infinite eps would multiply a zero error into NaN).
    """
    if not (isinstance(eps, (int, float, np.integer, np.floating))
            and math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    c, _ = _points(costs, errors)
    hull = lower_hull(costs, errors)
    if not hull:
        return []
    bound = (1 + eps) * hull_errors_at(costs, errors, hull, [float(x) for x in costs])
    band = [i for i in range(len(costs)) if float(errors[i]) <= bound[i] + BAND_ABS_TOL]
    # Same order as the hull: by exact cost, then index.
    return sorted(band, key=lambda i: (c[i], i))


def _min_max_scaled(values: np.ndarray) -> np.ndarray:
    """`values` mapped linearly onto [0, 1]; all zeros when they are all equal."""
    lo, hi = values.min(), values.max()
    if hi == lo:
        return np.zeros_like(values)
    return (values - lo) / (hi - lo)


def sampling_weights(counts: Sequence[float], costs: Sequence[float]) -> np.ndarray:
    """Parent-sampling probabilities for band members, favouring cheap, rarely-sampled ones.

    weight_i = 1 / (1 + c_i') + 1 / (1 + m_i'), where c' and m' are the sampling count and
    the cost, each min-max scaled to [0, 1] over the given members. Each weight lies in
    [1, 2], so no member is ever starved; the result is normalised to sum to 1.
    """
    if len(counts) != len(costs):
        raise ValueError(f"{len(counts)} counts but {len(costs)} costs")
    if len(counts) == 0:
        raise ValueError("no candidates to weight")
    n = np.asarray(counts, dtype=np.float64)
    m = np.asarray(costs, dtype=np.float64)
    for name, arr in (("counts", n), ("costs", m)):
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise ValueError(f"{name} must be finite and >= 0, got {arr.tolist()!r}")
    w = 1.0 / (1.0 + _min_max_scaled(n)) + 1.0 / (1.0 + _min_max_scaled(m))
    return w / w.sum()


def sample_parent(rng: np.random.Generator, candidates: Sequence[int],
                  counts: Sequence[float], costs: Sequence[float]) -> int:
    """One of `candidates`, drawn with `sampling_weights(counts, costs)`.

    `counts` and `costs` belong to the candidates, in the same order. Exactly one uniform
    draw is taken from `rng`, so the result and the rng's next state depend only on the
    rng's state and the arguments.
    """
    if len(candidates) != len(counts):
        raise ValueError(f"{len(candidates)} candidates but {len(counts)} counts")
    p = sampling_weights(counts, costs)
    # Inverse-CDF by hand rather than rng.choice: one documented draw, no hidden checks.
    cdf = np.cumsum(p)
    k = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
    return int(candidates[min(k, len(candidates) - 1)])


def pareto_front(costs: Sequence[float], errors: Sequence[float]) -> list[int]:
    """Non-dominated points, cheapest first (so errors strictly decrease along it).

    A point is dominated when another is no more expensive and no less accurate, and
    better in one of the two. Of identical points only the smallest index is kept, as in
    `lower_hull`, whose vertices are always a subset of this front.
    """
    c, e = _points(costs, errors)
    front: list[int] = []
    for i in _sorted_order(c, e):
        # Sorted by cost then error: a point survives iff it beats every cheaper-or-equal one.
        if not front or e[i] < e[front[-1]]:
            front.append(i)
    return front
