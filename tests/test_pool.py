"""The pool's hull and band do not depend on the order its models arrived in: a resumed
run rebuilds the pool in another order than the live run filled it (a kill test once saw
frontier_eps.tsv list two equal-cost models the other way round after a resume)."""

import random

from hypothesis import given, settings, strategies as st

from petrinas.report.frontier import frontier_ids
from petrinas.search.pool import Pool, PoolEntry, trial_order


def entry(n: int, cost: float, val: float) -> PoolEntry:
    return PoolEntry(trial_id=f"t{n:04d}", parent_id=None, stage="seed", cost=cost,
                     val_top1=val, cells=1, reductions=0, nodes=1)


def filled(entries: list[PoolEntry]) -> Pool:
    pool = Pool()
    for e in entries:
        pool.add(e)
    return pool


def test_trial_order_is_submission_order_past_four_digits():
    ids = ["t0000", "t0009", "t0010", "t9999", "t10000", "t10001"]
    assert sorted(reversed(ids), key=trial_order) == ids


def test_equal_cost_ties_go_to_the_earlier_trial_whatever_arrived_first():
    # t0001 and t0002 are the same point; t0003 costs the same with a higher error.
    late_first = [entry(3, 10, 0.895), entry(2, 10, 0.9), entry(1, 10, 0.9), entry(0, 5, 0.5)]
    pool = filled(late_first)
    assert pool.frontier() == ["t0000", "t0001"]
    assert pool.band(0.1) == ["t0000", "t0001", "t0002", "t0003"]
    rows = [dict(vars(e), status="ok", macs=e.cost) for e in late_first]
    assert frontier_ids(rows, 0.1) == (pool.frontier(), pool.band(0.1))


# Few distinct costs and accuracies, so that ties are common.
points = st.lists(st.tuples(st.sampled_from([1.0, 2.0, 3.0, 5.0]),
                            st.sampled_from([0.5, 0.7, 0.8, 0.9])), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(points, st.randoms(use_true_random=False), st.sampled_from([0.0, 0.05, 0.3]))
def test_hull_and_band_are_the_same_for_any_arrival_order(pts, rnd: random.Random, eps):
    """A live pool (models arriving in one order, its band asked for after each, as the
    strategy does) against the pool a resume rebuilds from its state in another order,
    with ids that cross from four digits to five (t9999, t10000).

    Fails if a tie is broken by arrival order, or by the id's string order, in Pool
    (hull, band, incremental band) or in frontier_ids."""
    first_id = 10_000 - len(pts) // 2  # ids on both sides of t9999 -> t10000
    entries = [entry(first_id + n, c, v) for n, (c, v) in enumerate(pts)]
    arrived, stored = list(entries), list(entries)
    rnd.shuffle(arrived)
    rnd.shuffle(stored)
    live = Pool()
    for e in arrived:
        live.add(e)
        live.band(eps)
    resumed = Pool()
    resumed.load_state_dict({"entries": [dict(vars(e)) for e in stored]})
    assert resumed.frontier() == live.frontier() == filled(entries).frontier()
    assert resumed.band(eps) == live.band(eps) == filled(entries).band(eps)
    rows = [dict(vars(e), status="ok", macs=e.cost) for e in stored]
    assert frontier_ids(rows, eps) == (live.frontier(), live.band(eps))
