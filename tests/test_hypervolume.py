"""The hypervolume of a front in (log10 cost, error), against brute-force area counting."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from petrinas.search.hypervolume import hypervolume, selected_hypervolume

# Points on a grid: log10 cost in steps of 0.1 (from 10 to 10^6), error in steps of 0.01.
X_STEP, Y_STEP = 0.1, 0.01
REF_K, REF_J = 60, 80                 # reference point: cost 10^6, error 0.80


def brute_force(points: list[tuple[int, int]], ref_k: int, ref_j: int) -> float:
    """Count grid cells: cell (k, j) (lower-left corner at x = k * X_STEP, y = j * Y_STEP)
    is dominated when some point lies at or left of and at or below its corner."""
    cells = sum(1 for k in range(ref_k) for j in range(ref_j)
                if any(pk <= k and pj <= j for pk, pj in points))
    return cells * X_STEP * Y_STEP


def as_values(points: list[tuple[int, int]]) -> tuple[list[float], list[float]]:
    return [10 ** (k * X_STEP) for k, _ in points], [j * Y_STEP for _, j in points]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(10, 70), st.integers(0, 90)), max_size=12))
def test_agrees_with_brute_force_on_random_fronts(points):
    # Points beyond the reference (k >= 60 or j >= 80) must add nothing.
    costs, errors = as_values(points)
    expected = brute_force(points, REF_K, REF_J)
    got = hypervolume(costs, errors, 10 ** (REF_K * X_STEP), REF_J * Y_STEP)
    assert got == pytest.approx(expected, abs=1e-9)


def test_hand_checked_values():
    # One point at (100, 0.2) against (10^4, 0.8): 2 decades x 0.6.
    assert hypervolume([100], [0.2], 1e4, 0.8) == pytest.approx(1.2)
    # A dominated point adds nothing; a second front point adds its strip.
    assert hypervolume([100, 1000, 1000], [0.2, 0.3, 0.1], 1e4, 0.8) == \
        pytest.approx(1.0 * 0.6 + 1.0 * 0.7)
    assert hypervolume([], [], 1e4, 0.8) == 0.0
    assert hypervolume([1e5], [0.1], 1e4, 0.8) == 0.0     # costlier than the reference
    assert hypervolume([100], [0.9], 1e4, 0.8) == 0.0     # worse than the reference


def test_moving_a_point_left_or_down_only_grows_it():
    base = hypervolume([100, 1000], [0.3, 0.1], 1e4, 0.8)
    assert hypervolume([50, 1000], [0.3, 0.1], 1e4, 0.8) > base
    assert hypervolume([100, 1000], [0.3, 0.05], 1e4, 0.8) > base


@pytest.mark.parametrize("costs,errors,ref", [
    ([0.0], [0.1], (1e4, 0.8)), ([math.inf], [0.1], (1e4, 0.8)),
    ([10], [math.nan], (1e4, 0.8)), ([10], [0.1], (0.0, 0.8)), ([10, 20], [0.1], (1e4, 0.8)),
])
def test_bad_input(costs, errors, ref):
    with pytest.raises(ValueError):
        hypervolume(costs, errors, *ref)


def test_a_cost_below_the_floor_counts_as_the_floor():
    """Without a floor, halving the cheapest model's cost at 20 % error adds
    log10(2) x 0.6; with the floor at 100, a model at 50 or at 1 scores as one at 100."""
    assert hypervolume([50], [0.2], 1e4, 0.8) - hypervolume([100], [0.2], 1e4, 0.8) == \
        pytest.approx(math.log10(2) * 0.6)
    for cheap in (50, 1, 0.0):
        assert hypervolume([cheap], [0.2], 1e4, 0.8, cost_floor=100) == pytest.approx(1.2)
    # Above the floor nothing changes: two decades and one decade.
    assert hypervolume([100, 1000], [0.3, 0.1], 1e4, 0.8, cost_floor=10) == \
        pytest.approx(hypervolume([100, 1000], [0.3, 0.1], 1e4, 0.8))
    with pytest.raises(ValueError, match="cost floor"):
        hypervolume([100], [0.2], 1e4, 0.8, cost_floor=1e4)


def test_selection_is_on_validation_and_the_test_error_of_the_pick_counts():
    """Two models at 100 MACs-ish: the one with the better validation error is picked
    from its cost on, whatever the other's test error, and a costlier model with a
    worse validation error never is."""
    costs, val, test = [100, 100, 1000], [0.2, 0.3, 0.25], [0.4, 0.1, 0.05]
    # t0 picked from 100 to 10^4 (2 decades) with test 0.4: 2 x (0.8 - 0.4).
    assert selected_hypervolume(costs, val, test, 1e4, 0.8) == pytest.approx(0.8)
    # The test front alone would take the two lucky test errors: 1 x 0.7 + 1 x 0.75.
    assert hypervolume(costs, test, 1e4, 0.8) == pytest.approx(1.45)
    # A pick whose test error is above the reference adds nothing, never a negative.
    assert selected_hypervolume([100], [0.2], [0.9], 1e4, 0.8) == 0.0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(10, 70), st.integers(0, 90)), max_size=12))
def test_selected_on_its_own_errors_is_the_hypervolume(points):
    costs, errors = as_values(points)
    assert selected_hypervolume(costs, errors, errors, 1e6, 0.8, 100.0) == \
        pytest.approx(hypervolume(costs, errors, 1e6, 0.8, 100.0), abs=1e-12)
