"""Tests for petrinas.search.hull: property tests against exact references, plus examples."""

from __future__ import annotations

from fractions import Fraction
from typing import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from petrinas.search.hull import (
    BAND_ABS_TOL,
    eps_band,
    hull_error_at,
    lower_hull,
    pareto_front,
    sample_parent,
    sampling_weights,
)

FAST = settings(max_examples=100, deadline=None)

# --- strategies -------------------------------------------------------------------------

_cost = st.one_of(st.integers(0, 10**9), st.floats(0, 1e9, allow_nan=False))
_error = st.floats(0, 1, allow_nan=False)
_raw = st.lists(st.tuples(_cost, _error), min_size=1, max_size=60)
# Few distinct points, many repeats: duplicates and equal costs are the norm.
_repeated = st.lists(st.tuples(_cost, _error), min_size=1, max_size=8).flatmap(
    lambda base: st.lists(st.sampled_from(base), min_size=1, max_size=60))
# A coarse grid of exactly representable values: collinear points are common, and a point
# off the hull line is at least 1/(32*20) away from it, far beyond any float tolerance.
_grid_points = st.lists(st.tuples(st.integers(0, 20), st.integers(0, 32).map(lambda k: k / 32)),
                        min_size=1, max_size=60)
points = st.one_of(_raw, _repeated, _grid_points).map(lambda ps: ([c for c, _ in ps],
                                                                  [e for _, e in ps]))
grid_points = _grid_points.map(lambda ps: ([c for c, _ in ps], [e for _, e in ps]))


# --- exact references -------------------------------------------------------------------

def exact(v: float) -> Fraction:
    return Fraction(int(v)) if isinstance(v, int) else Fraction(float(v))


def exact_hull_error(costs: Sequence[float], errors: Sequence[float], hull: list[int],
                     cost: float) -> Fraction:
    """Exact piecewise-linear hull value with flat ends, independent of the float version."""
    hc = [exact(costs[i]) for i in hull]
    he = [exact(errors[i]) for i in hull]
    x = exact(cost)
    if x <= hc[0]:
        return he[0]
    if x >= hc[-1]:
        return he[-1]
    k = next(k for k in range(1, len(hc)) if x <= hc[k])
    return he[k - 1] + (he[k] - he[k - 1]) * (x - hc[k - 1]) / (hc[k] - hc[k - 1])


def on_hull_line(costs, errors, hull) -> set[int]:
    return {i for i in range(len(costs))
            if exact(errors[i]) == exact_hull_error(costs, errors, hull, costs[i])}


def brute_pareto(costs, errors) -> list[int]:
    """Non-dominated points by the definition, keeping the smallest index of identical ones."""
    c = [exact(x) for x in costs]
    e = [exact(x) for x in errors]
    n = len(c)
    keep = []
    for i in range(n):
        dominated = any(c[j] <= c[i] and e[j] <= e[i] and (c[j] < c[i] or e[j] < e[i])
                        for j in range(n))
        earlier_twin = any(c[j] == c[i] and e[j] == e[i] for j in range(i))
        if not dominated and not earlier_twin:
            keep.append(i)
    return sorted(keep, key=lambda i: (c[i], i))


# --- lower_hull ---------------------------------------------------------------------------

@FAST
@given(points)
def test_every_point_is_on_or_above_the_hull(pts):
    costs, errors = pts
    hull = lower_hull(costs, errors)
    for i in range(len(costs)):
        assert errors[i] >= hull_error_at(costs, errors, hull, costs[i]) - 1e-9
        # And exactly, so the float interpolation cannot hide a wrong hull.
        assert exact(errors[i]) >= exact_hull_error(costs, errors, hull, costs[i])


@FAST
@given(points)
def test_hull_is_strictly_monotone_and_strictly_convex(pts):
    costs, errors = pts
    hull = lower_hull(costs, errors)
    hc = [exact(costs[i]) for i in hull]
    he = [exact(errors[i]) for i in hull]
    assert all(a < b for a, b in zip(hc, hc[1:]))
    assert all(a > b for a, b in zip(he, he[1:]))
    slopes = [(he[k + 1] - he[k]) / (hc[k + 1] - hc[k]) for k in range(len(hull) - 1)]
    assert all(a < b for a, b in zip(slopes, slopes[1:]))
    assert len(set(hull)) == len(hull)


@FAST
@given(points)
def test_hull_endpoints(pts):
    costs, errors = pts
    c = [exact(x) for x in costs]
    e = [exact(x) for x in errors]
    hull = lower_hull(costs, errors)
    first, last = hull[0], hull[-1]
    # First: cheapest, best among the cheapest, smallest index among identical ones.
    cheapest = min(c)
    assert c[first] == cheapest
    assert e[first] == min(e[i] for i in range(len(c)) if c[i] == cheapest)
    assert first == min(i for i in range(len(c)) if (c[i], e[i]) == (c[first], e[first]))
    # Last: minimum error, cheapest among those.
    assert e[last] == min(e)
    assert c[last] == min(c[i] for i in range(len(c)) if e[i] == e[last])


@FAST
@given(points)
def test_hull_vertices_are_pareto_optimal(pts):
    costs, errors = pts
    front = pareto_front(costs, errors)
    assert front == brute_pareto(costs, errors)
    assert set(lower_hull(costs, errors)) <= set(front)


@FAST
@given(points, st.permutations(range(60)))
def test_hull_does_not_depend_on_input_order_except_for_indices(pts, perm):
    costs, errors = pts
    order = [p for p in perm if p < len(costs)]
    hull = lower_hull(costs, errors)
    hull_perm = lower_hull([costs[i] for i in order], [errors[i] for i in order])
    as_points = lambda idx, cs, es: [(exact(cs[i]), exact(es[i])) for i in idx]
    assert as_points(hull, costs, errors) == as_points(
        hull_perm, [costs[i] for i in order], [errors[i] for i in order])


# --- eps_band -------------------------------------------------------------------------------

@FAST
@given(points, st.floats(0, 10))
def test_band_contains_hull_and_is_sorted(pts, eps):
    costs, errors = pts
    band = eps_band(costs, errors, eps)
    assert set(lower_hull(costs, errors)) <= set(band)
    keys = [(exact(costs[i]), i) for i in band]
    assert keys == sorted(keys)
    assert len(set(band)) == len(band)


@FAST
@given(grid_points)
def test_band_at_eps_zero_is_exactly_the_hull_line(pts):
    costs, errors = pts
    hull = lower_hull(costs, errors)
    assert set(eps_band(costs, errors, 0.0)) == on_hull_line(costs, errors, hull)


@FAST
@given(points)
def test_band_at_eps_zero_on_arbitrary_floats(pts):
    # With arbitrary floats a point may sit within the absolute tolerance of the line
    # without being on it, so check both inclusions up to that tolerance.
    costs, errors = pts
    hull = lower_hull(costs, errors)
    band = set(eps_band(costs, errors, 0.0))
    assert on_hull_line(costs, errors, hull) <= band
    for i in band:
        gap = exact(errors[i]) - exact_hull_error(costs, errors, hull, costs[i])
        assert gap <= Fraction(2 * BAND_ABS_TOL)


@FAST
@given(points, st.floats(0, 5), st.floats(0, 5))
def test_band_grows_with_eps(pts, a, b):
    costs, errors = pts
    lo, hi = min(a, b), max(a, b)
    assert set(eps_band(costs, errors, lo)) <= set(eps_band(costs, errors, hi))


@FAST
@given(points, st.floats(0, 5))
def test_band_membership_matches_definition(pts, eps):
    costs, errors = pts
    hull = lower_hull(costs, errors)
    band = set(eps_band(costs, errors, eps))
    for i in range(len(costs)):
        bound = (1 + eps) * hull_error_at(costs, errors, hull, costs[i])
        assert (i in band) == (errors[i] <= bound + BAND_ABS_TOL)


@pytest.mark.parametrize("eps", [-1e-9, -1.0, float("nan"), float("inf")])
def test_band_rejects_bad_eps(eps):
    with pytest.raises(ValueError):
        eps_band([1.0, 2.0], [0.5, 0.4], eps)


# --- sampling ---------------------------------------------------------------------------------

_members = st.lists(st.tuples(st.integers(0, 100), st.integers(0, 10**9)), min_size=1, max_size=30)


@FAST
@given(_members)
def test_sampling_weights_are_a_distribution_favouring_cheap_and_rare(members):
    counts = [n for n, _ in members]
    costs = [m for _, m in members]
    p = sampling_weights(counts, costs)
    assert p.shape == (len(members),)
    assert np.all(p > 0)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    for i in range(len(members)):
        for j in range(len(members)):
            if counts[i] == counts[j] and costs[i] < costs[j]:
                assert p[i] > p[j]
            if costs[i] == costs[j] and counts[i] < counts[j]:
                assert p[i] > p[j]
            if counts[i] == counts[j] and costs[i] == costs[j]:
                assert p[i] == p[j]


@FAST
@given(_members, st.integers(0, 2**32 - 1))
def test_sample_parent_is_reproducible_and_picks_a_candidate(members, seed):
    counts = [n for n, _ in members]
    costs = [m for _, m in members]
    candidates = [10 * k + 3 for k in range(len(members))]

    def draw() -> list[int]:
        rng = np.random.default_rng(seed)
        return [sample_parent(rng, candidates, counts, costs) for _ in range(6)]

    first, second = draw(), draw()
    assert first == second
    assert all(c in candidates for c in first)
    assert all(type(c) is int for c in first)


def test_sample_parent_frequencies_follow_weights():
    counts, costs = [0, 0, 5], [0, 100, 100]
    p = sampling_weights(counts, costs)  # [2, 1.5, 1] / 4.5
    assert p == pytest.approx(np.array([2, 1.5, 1]) / 4.5)
    rng = np.random.default_rng(0)
    draws = [sample_parent(rng, [7, 8, 9], counts, costs) for _ in range(5000)]
    freq = np.array([draws.count(k) for k in (7, 8, 9)]) / len(draws)
    assert freq == pytest.approx(p, abs=0.03)


def test_sampling_weights_all_equal_is_uniform():
    assert sampling_weights([3, 3, 3, 3], [5.0, 5.0, 5.0, 5.0]) == pytest.approx([0.25] * 4)


def test_sampling_rejects_bad_input():
    with pytest.raises(ValueError):
        sampling_weights([], [])
    with pytest.raises(ValueError):
        sampling_weights([1, 2], [1.0])
    with pytest.raises(ValueError):
        sampling_weights([-1], [1.0])
    with pytest.raises(ValueError):
        sampling_weights([1], [float("nan")])
    with pytest.raises(ValueError):
        sample_parent(np.random.default_rng(0), [1, 2], [0], [0.0])


# --- examples -----------------------------------------------------------------------------------

def test_empty():
    assert lower_hull([], []) == []
    assert eps_band([], [], 0.1) == []
    assert pareto_front([], []) == []
    with pytest.raises(ValueError):
        hull_error_at([], [], [], 1.0)


def test_single_point():
    assert lower_hull([5e6], [0.3]) == [0]
    assert eps_band([5e6], [0.3], 0.0) == [0]
    assert pareto_front([5e6], [0.3]) == [0]
    for x in (0.0, 5e6, 1e9):
        assert hull_error_at([5e6], [0.3], [0], x) == 0.3


def test_all_identical_points():
    costs, errors = [7.0] * 5, [0.25] * 5
    assert lower_hull(costs, errors) == [0]
    assert pareto_front(costs, errors) == [0]
    assert eps_band(costs, errors, 0.0) == [0, 1, 2, 3, 4]


def test_cheaper_and_better_point_is_the_whole_hull():
    costs, errors = [2e6, 1e6], [0.2, 0.1]
    assert lower_hull(costs, errors) == [1]
    assert pareto_front(costs, errors) == [1]
    assert eps_band(costs, errors, 0.0) == [1]
    assert eps_band(costs, errors, 0.5) == [1]
    assert eps_band(costs, errors, 1.5) == [1, 0]


def test_hand_checked_five_points():
    # A(0,.8) B(1,.5) C(2,.45) D(3,.2) E(4,.3), given shuffled.
    # A->B slope -.3, B->D slope -.15: C lies above B-D (line value .35 at cost 2).
    # D has the minimum error, so the rising D->E part is cut off.
    names = ["C", "E", "A", "D", "B"]
    pts = {"A": (0, 0.8), "B": (1, 0.5), "C": (2, 0.45), "D": (3, 0.2), "E": (4, 0.3)}
    costs = [pts[n][0] for n in names]
    errors = [pts[n][1] for n in names]
    idx = {n: names.index(n) for n in names}
    assert lower_hull(costs, errors) == [idx["A"], idx["B"], idx["D"]]
    hull = lower_hull(costs, errors)
    assert hull_error_at(costs, errors, hull, 2) == pytest.approx(0.35)
    assert hull_error_at(costs, errors, hull, 0.5) == pytest.approx(0.65)
    assert hull_error_at(costs, errors, hull, 4) == 0.2  # flat to the right
    assert hull_error_at(costs, errors, hull, -1) == 0.8  # flat to the left
    # C needs eps >= .45/.35 - 1 = .2857; E needs eps >= .3/.2 - 1 = .5.
    assert eps_band(costs, errors, 0.0) == [idx["A"], idx["B"], idx["D"]]
    assert eps_band(costs, errors, 0.28) == [idx["A"], idx["B"], idx["D"]]
    assert eps_band(costs, errors, 0.29) == [idx[n] for n in "ABCD"]
    assert eps_band(costs, errors, 0.6) == [idx[n] for n in "ABCDE"]
    # C is not on the hull but nothing dominates it.
    assert pareto_front(costs, errors) == [idx[n] for n in "ABCD"]


def test_collinear_middle_point_is_not_a_vertex_but_is_in_the_band():
    costs, errors = [0, 1, 2], [1.0, 0.5, 0.0]
    assert lower_hull(costs, errors) == [0, 2]
    assert eps_band(costs, errors, 0.0) == [0, 1, 2]


def test_equal_minimum_errors_end_the_hull_at_the_cheapest():
    costs, errors = [0, 2, 1], [1.0, 0.0, 0.0]
    assert lower_hull(costs, errors) == [0, 2]
    assert eps_band(costs, errors, 0.0) == [0, 2, 1]
    assert pareto_front(costs, errors) == [0, 2]


def test_equal_costs_keep_the_lowest_error_and_smallest_index():
    costs, errors = [3, 3, 3, 5], [0.4, 0.2, 0.2, 0.1]
    assert lower_hull(costs, errors) == [1, 3]
    assert eps_band(costs, errors, 0.0) == [1, 2, 3]


def test_large_integer_costs_are_exact():
    # 2**60 - 1 is not a float; as one it would round to the midpoint 2**60 and make the
    # three points collinear. As an int, B lies just below the A-C line: a vertex.
    costs = [0, 2**60 - 1, 2**61]
    errors = [1.0, 0.5, 0.0]
    assert lower_hull(costs, errors) == [0, 1, 2]
    assert lower_hull([0, 2**60, 2**61], errors) == [0, 2]


def test_numpy_inputs():
    costs = np.array([0, 1, 2, 3], dtype=np.int64)
    errors = np.array([0.9, 0.5, 0.4, 0.1])
    assert lower_hull(costs, errors) == [0, 1, 3]
    assert all(type(i) is int for i in lower_hull(costs, errors))
    assert eps_band(costs, errors, 0.0) == [0, 1, 3]


@pytest.mark.parametrize("costs, errors", [
    ([1.0, 2.0], [0.5]),
    ([-1.0], [0.5]),
    ([1.0], [1.5]),
    ([1.0], [-0.1]),
    ([float("nan")], [0.5]),
    ([float("inf")], [0.5]),
    ([1.0], [float("nan")]),
])
def test_bad_points_are_rejected(costs, errors):
    with pytest.raises(ValueError):
        lower_hull(costs, errors)
    with pytest.raises(ValueError):
        pareto_front(costs, errors)
